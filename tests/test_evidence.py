"""Evidence: passage sentences ranked for a question by words and by meaning, with the real embedding model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from rag.answering.evidence import EvidencePool
from rag.store.embedding import Embedder
from rag.types import Chunk, Passage
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


class TestRank:
    def test_the_sentence_with_the_distinguishing_words_ranks_first(self, embedder: Embedder) -> None:
        ranked = EvidencePool([passage(STORY)], embedder.embed).rank("When does the ceasefire start, says the CSTO?")
        assert ranked[0].text.startswith("The ceasefire starts at midnight")
        assert ranked[0].lexical > ranked[1].lexical > 0 and ranked[-1].lexical == 0

    def test_stemming_matches_other_forms_of_a_word(self) -> None:
        ranked = EvidencePool([passage("The minister resigned on Monday. Prices rose.")]).rank(
            "Who announced a resignation?"
        )
        assert ranked[0].text.startswith("The minister resigned") and ranked[0].lexical > 0

    def test_meaning_finds_a_paraphrase_that_shares_no_word(self, embedder: Embedder) -> None:
        text = "Stocks fell sharply in Tokyo. The prime minister stepped down after the scandal."
        pool = EvidencePool([passage(text)], embedder.embed)
        ranked = pool.rank("Who quit the government?")
        assert ranked[0].text.startswith("The prime minister stepped down")
        assert ranked[0].lexical == 0 and ranked[0].semantic > ranked[1].semantic
        assert EvidencePool([passage(text)]).rank("Who quit the government?")[0].semantic == 0.0

    def test_focus_keeps_reading_order_and_the_limit(self, embedder: Embedder) -> None:
        chosen = EvidencePool([passage(STORY)], embedder.embed).focus(
            "Which delegates signed a ceasefire, and when?", 2
        )
        assert list(chosen) == [1] and len(chosen[1]) == 2
        assert STORY.index(chosen[1][0]) < STORY.index(chosen[1][1])

    def test_containing_and_support(self, embedder: Embedder) -> None:
        pool = EvidencePool([passage(STORY), passage("Markets in Yerevan rose on the news.", "b")], embedder.embed)
        assert [s.number for s in pool.containing("Yerevan markets")] == [1, 2]
        assert pool.containing("Tbilisi") == []
        best = pool.support("A ceasefire was signed by delegates from Armenia and Azerbaijan.")
        assert best is not None and best.text.startswith("Delegates from Armenia") and best.lexical >= 0.8
        only_b = pool.support("Markets rose.", numbers=[2])
        assert only_b is not None and only_b.number == 2

    def test_scores_do_not_depend_on_the_process_hash_seed(self) -> None:
        """Sets iterate in hash order, which differs per process; a plain float sum over one made the
        last bits, and so multiple-choice ties, change from run to run."""
        script = textwrap.dedent(
            """
            import json
            from tests.test_evidence import ORDER_SENSITIVE, passage
            from rag.answering.evidence import EvidencePool
            question = "armenia border csto geneva kremlin midnight minister moscow secretary treaty villag yerevan"
            print(json.dumps([s.lexical for s in EvidencePool([passage(ORDER_SENSITIVE)]).rank(question)]))
            """
        )
        runs = set()
        for seed in range(8):
            env = {**os.environ, "PYTHONHASHSEED": str(seed)}
            out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
            assert out.returncode == 0, out.stderr
            runs.add(tuple(json.loads(out.stdout)))
        assert len(runs) == 1
