"""Evidence scoring: the lexical sentence ranker behind extractive answers, focused prompts and
multiple-choice picks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from rag.chunking import Chunk
from rag.evidence import focus, rank_sentences
from rag.retrieval import Passage
from tests.conftest import ROOT


def passage(text: str, doc_id: str = "a") -> Passage:
    chunk = Chunk(id=0, doc_id=doc_id, ordinal=0, text=text, start=0, end=len(text), n_tokens=len(text.split()))
    return Passage(chunk=chunk, score=1.0, rank=1)


STORY = (
    "The summit in Geneva ended on Friday. Delegates from Armenia and Azerbaijan signed a ceasefire. "
    "The ceasefire starts at midnight, the Secretary General of the CSTO said. Markets in Yerevan rose."
)

# Word frequencies whose IDF values, added in different orders, round differently in the last bit.
ORDER_SENSITIVE = (
    "Delegate secretary geneva envoy troop csto. Treaty midnight geneva envoy armenia troop border. "
    "Border armenia troop secretary csto. Geneva yerevan armenia moscow talk kremlin."
)


class TestRankSentences:
    def test_the_sentence_with_the_distinguishing_words_ranks_first(self) -> None:
        ranked = rank_sentences("When does the ceasefire start, according to the CSTO?", [passage(STORY)])
        assert ranked[0].text.startswith("The ceasefire starts at midnight")
        assert ranked[0].coverage > ranked[1].coverage > 0
        assert ranked[-1].coverage == 0

    def test_focus_keeps_reading_order_and_the_limit(self) -> None:
        chosen = focus("Which delegates signed a ceasefire, and when does it start?", [passage(STORY)], 2)
        assert list(chosen) == [1] and len(chosen[1]) == 2
        assert STORY.index(chosen[1][0]) < STORY.index(chosen[1][1])

    def test_scores_do_not_depend_on_the_process_hash_seed(self) -> None:
        """Sets iterate in hash order, which differs per process; a plain float sum over one made the
        last bits, and so multiple-choice ties, change from run to run."""
        script = textwrap.dedent(
            """
            import json
            from tests.test_evidence import ORDER_SENSITIVE, passage
            from rag.evidence import rank_sentences
            question = "armenia border csto geneva kremlin midnight minister moscow secretary treaty villag yerevan"
            print(json.dumps([e.coverage for e in rank_sentences(question, [passage(ORDER_SENSITIVE)])]))
            """
        )
        runs = set()
        for seed in range(8):
            env = {**os.environ, "PYTHONHASHSEED": str(seed)}
            out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
            assert out.returncode == 0, out.stderr
            runs.add(tuple(json.loads(out.stdout)))
        assert len(runs) == 1
