"""The catalog: the partitions of an archive, and which dates each one holds.

It is derived from the partitions' own manifests and rewritten atomically after they are saved, so a
crash between a partition's save and the catalog's leaves a partition the next run lists again, never a
catalog that names files which do not exist.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rag import durable
from rag.dates import DateRange
from rag.errors import IndexDirError
from rag.store.index import ArticleIndex, Manifest, verify

CATALOG = "catalog.json"
PARTITIONS = "partitions"
UNDATED = "undated"
ID_BITS = 40
"""A chunk's id in the archive is its partition's number shifted left by this, plus its id in the
partition: ids stay unique across partitions without renumbering any of them (2^40 chunks a month)."""


def partition_of(published: dt.date | None) -> str:
    """The partition an article belongs to: its publication month, or `undated`."""
    return UNDATED if published is None else f"{published.year:04d}-{published.month:02d}"


@dataclass
class PartitionInfo:
    name: str
    number: int
    """Fixed when the partition is created: the high bits of its chunks' archive ids."""
    first: str | None = None
    last: str | None = None
    """The earliest and latest publication dates it holds (ISO), None when undated or empty."""
    documents: int = 0
    chunks: int = 0
    generation: int = 0


@dataclass
class Catalog:
    embedding_model: str
    embedding_precision: str
    dimension: int
    chunk_tokens: int
    chunk_overlap: int
    tokenizer: str
    partitions: dict[str, PartitionInfo] = field(default_factory=dict)
    updated: str = ""

    @staticmethod
    def exists(root: Path) -> bool:
        return (root / CATALOG).is_file()

    @classmethod
    def load(cls, root: Path) -> Catalog:
        try:
            data = json.loads((root / CATALOG).read_text(encoding="utf-8"))
            partitions = {name: PartitionInfo(**info) for name, info in data.pop("partitions").items()}
            return cls(**data, partitions=partitions)
        except FileNotFoundError:
            raise IndexDirError(
                f"no archive at {root} (no {CATALOG})", hint="build one with `rag index --ray PATH...`"
            ) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise IndexDirError(
                f"the archive catalog {root / CATALOG} is unreadable ({exc})",
                hint="`rag index --ray` with no new articles rewrites it from the partitions",
            ) from exc

    @classmethod
    def like(cls, manifest: Manifest) -> Catalog:
        """An empty catalog for partitions built as `manifest` says."""
        return cls(
            manifest.embedding_model,
            manifest.embedding_precision,
            manifest.dimension,
            manifest.chunk_tokens,
            manifest.chunk_overlap,
            manifest.tokenizer,
        )

    def manifest(self) -> Manifest:
        """The manifest a new partition starts from."""
        return Manifest(
            embedding_model=self.embedding_model,
            dimension=self.dimension,
            chunk_tokens=self.chunk_tokens,
            chunk_overlap=self.chunk_overlap,
            tokenizer=self.tokenizer,
            embedding_precision=self.embedding_precision,
        )

    def number_for(self, name: str) -> int:
        info = self.partitions.get(name)
        if info is not None:
            return info.number
        return max((p.number for p in self.partitions.values()), default=-1) + 1

    def refresh(self, index: ArticleIndex) -> None:
        """Record a partition as its saved index stands."""
        name = index.path.name
        dates = index.documents.summaries().dated()
        self.partitions[name] = PartitionInfo(
            name=name,
            number=self.number_for(name),
            first=dates[0].isoformat() if dates else None,
            last=dates[1].isoformat() if dates else None,
            documents=len(index.documents),
            chunks=len(index.chunks),
            generation=index.manifest.generation,
        )
        if not index.documents:
            del self.partitions[name]

    def save(self, root: Path) -> None:
        self.updated = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        data: dict[str, Any] = asdict(self)
        data["partitions"] = dict(sorted(data["partitions"].items()))
        durable.replace(root / CATALOG, lambda tmp: tmp.write_text(json.dumps(data, indent=2), encoding="utf-8"))
        durable.fsync_dir(root)

    def partitions_for(self, dates: DateRange) -> list[str]:
        """The partitions that can hold articles within `dates`, oldest first: undated articles pass every
        date filter, so `undated` is always one."""
        kept = []
        for name, info in sorted(self.partitions.items()):
            if info.first is None or (
                (dates.until is None or dt.date.fromisoformat(info.first) <= dates.until)
                and (dates.since is None or dt.date.fromisoformat(info.last or info.first) >= dates.since)
            ):
                kept.append(name)
        return kept

    @property
    def documents(self) -> int:
        return sum(p.documents for p in self.partitions.values())

    @property
    def chunks(self) -> int:
        return sum(p.chunks for p in self.partitions.values())


def partition_path(root: Path, name: str) -> Path:
    return root / PARTITIONS / name


def verify_archive(root: Path, *, lock_timeout: float | None = None) -> tuple[Catalog | None, list[str]]:
    """`rag doctor` for an archive: the catalog loads, every partition it lists passes `rag.store.index.verify`,
    and the catalog names the generation each partition has saved."""
    try:
        catalog = Catalog.load(root)
    except IndexDirError as exc:
        return None, [exc.message]
    problems = []
    for name, info in sorted(catalog.partitions.items()):
        index, found = verify(partition_path(root, name), lock_timeout=lock_timeout)
        problems += [f"partition {name}: {problem}" for problem in found]
        if index is not None and index.manifest.generation != info.generation:
            problems.append(
                f"partition {name} is at generation {index.manifest.generation}, the catalog lists "
                f"{info.generation}: a run stopped between them (`rag index --ray` with any input rewrites it)"
            )
    return catalog, problems
