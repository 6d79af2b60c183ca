"""Scale-out on a real Ray cluster: a head and two worker nodes, each a set of separate processes
(`ray.cluster_utils.Cluster`), as `rag index --ray` and the shard actors meet them on real machines.

- `rag index --ray ADDRESS` indexes a RealTime QA subset into monthly partitions, and the archive searched
  through Ray shard actors ranks as one index over the same articles does;
- a worker node killed during ingest: Ray retries its work, and no article is lost or doubled;
- a shard actor killed between questions is restarted from its partitions on disk, and the next question
  waits for it; one that cannot come back makes the question fail naming the months it could not search.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag import RAG, Settings
from rag.archive.catalog import PARTITIONS, Catalog
from rag.errors import ShardUnavailable
from rag.store.index import ArticleIndex
from tests.conftest import cli_env
from tests.news_archive import Subset, needs_corpus, subset, top_articles

if not os.environ.get("CI"):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'rag[ray]'")

pytestmark = needs_corpus
ARTICLES = 200
RAG_BIN = str(Path(sys.executable).with_name("rag"))


@pytest.fixture(scope="module")
def cluster(_cache_home: Path) -> Iterator[Any]:
    """A head without CPUs (it schedules) and two worker nodes of one CPU each. The nodes' workers get this
    session's model cache, so they load the encoder the tests exported instead of exporting it again."""
    import ray
    from ray.cluster_utils import Cluster

    os.environ["XDG_CACHE_HOME"] = str(_cache_home)
    store = 200 * 1024 * 1024
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": store})
    cluster.workers = [cluster.add_node(num_cpus=1, object_store_memory=store) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Subset:
    return subset(tmp_path_factory.mktemp("rtqa"), ARTICLES)


@pytest.fixture(scope="module")
def one_machine(data: Subset, tmp_path_factory: pytest.TempPathFactory, _cache_home: Path) -> RAG:
    rag = RAG(
        Settings(index_dir=tmp_path_factory.mktemp("one") / "index", progress=False, cache_dir=_cache_home / "rag")
    )
    rag.index([data.corpus])
    return rag


def _rag_index(home: Path, archive: Path, address: str, corpus: Path, **settings: str) -> subprocess.Popen[str]:
    env = cli_env(home, RAG_INDEX_DIR=str(archive), **settings)
    return subprocess.Popen(
        [RAG_BIN, "index", "--ray", address, str(corpus)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def archive(cluster: Any, data: Subset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    target = home / "archive"
    run = _rag_index(home, target, cluster.address, data.corpus)
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err
    assert "0 updated" in out and " added" in out
    return target


def _stored(root: Path) -> dict[str, str]:
    """Article id -> partition, failing on an article held twice."""
    where: dict[str, str] = {}
    for name in Catalog.load(root).partitions:
        for doc_id in ArticleIndex.load(root / PARTITIONS / name).documents:
            assert doc_id not in where, f"{doc_id} is in {where.get(doc_id)} and {name}"
            where[doc_id] = name
    return where


def test_an_archive_indexed_on_ray_answers_as_one_machine(
    cluster: Any, archive: Path, one_machine: RAG, data: Subset, tmp_path: Path
) -> None:
    catalog = Catalog.load(archive)
    assert len(catalog.partitions) >= 5
    single = one_machine.open_index()
    assert set(_stored(archive)) == set(single.documents)
    assert catalog.chunks == len(single.chunks)

    sharded = RAG(one_machine.settings.model_copy(update={"index_dir": archive, "ray_address": cluster.address}))
    workers = sharded.retriever().source.shards.workers  # type: ignore[attr-defined]
    assert len(workers) == 2 and all(hasattr(w.stats, "remote") for w in workers)
    ranked = zip(top_articles(sharded, data.questions), top_articles(one_machine, data.questions), strict=True)
    same = [a == b for a, b in ranked]
    assert sum(same) / len(same) >= 0.99, f"{len(same) - sum(same)} of {len(same)} questions ranked differently"

    env = cli_env(tmp_path, RAG_INDEX_DIR=str(archive), RAG_RAY_ADDRESS=cluster.address)
    question, when = data.questions[0]
    asked = subprocess.run(
        [RAG_BIN, "ask", question, "--as-of", when.isoformat(), "--backend", "extractive"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert asked.returncode == 0, asked.stderr
    assert "[1]" in asked.stdout and "Sources:" in asked.stdout

    again = _rag_index(tmp_path, archive, cluster.address, data.corpus)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert f"0 added, 0 updated, {len(single.documents)} unchanged" in out and "0 chunks embedded" in out


def test_a_worker_node_killed_during_ingest_loses_and_doubles_nothing(
    cluster: Any, data: Subset, one_machine: RAG, tmp_path: Path
) -> None:
    target = tmp_path / "archive"
    # Checkpoints every 300 chunks: the catalog appears once a quarter of the work is saved.
    run = _rag_index(tmp_path, target, cluster.address, data.corpus, RAG_CHECKPOINT_CHUNKS="300")
    deadline = time.monotonic() + 300
    while not Catalog.exists(target) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run.poll() is None, "the run ended before a worker could be killed: make the subset larger"
    victim = cluster.workers.pop(0)
    cluster.remove_node(victim, allow_graceful=False)  # its raylet and workers, killed
    cluster.workers.append(cluster.add_node(num_cpus=1, object_store_memory=200 * 1024 * 1024))
    _, err = run.communicate(timeout=600)
    assert run.returncode == 0, err
    assert set(_stored(target)) == set(one_machine.open_index().documents)
    assert Catalog.load(target).chunks == len(one_machine.open_index().chunks)


def test_a_killed_shard_actor_is_restarted_and_the_question_waits(
    cluster: Any, archive: Path, one_machine: RAG, data: Subset
) -> None:
    import ray

    sharded = RAG(one_machine.settings.model_copy(update={"index_dir": archive, "ray_address": cluster.address}))
    questions = data.questions[:10]
    before = top_articles(sharded, questions)
    workers = sharded.retriever().source.shards.workers  # type: ignore[attr-defined]
    pids = [ray.get(worker.pid.remote()) for worker in workers]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert top_articles(sharded, questions) == before
    assert [ray.get(worker.pid.remote()) for worker in workers] != pids, "the shards run in new processes"


def test_a_shard_that_cannot_come_back_names_the_months_not_searched(
    cluster: Any, archive: Path, one_machine: RAG, data: Subset, tmp_path: Path
) -> None:
    import ray

    copy = tmp_path / "archive"
    shutil.copytree(archive, copy)
    settings = {"index_dir": copy, "ray_address": cluster.address, "ray_wait_seconds": 20.0}
    sharded = RAG(one_machine.settings.model_copy(update=settings))
    question, when = data.questions[0]
    sharded.search(question, as_of=when)
    month = sorted(Catalog.load(copy).partitions)[-1]
    shutil.move(copy / PARTITIONS / month, tmp_path / "gone")
    for worker in sharded.retriever().source.shards.workers:  # type: ignore[attr-defined]
        os.kill(ray.get(worker.pid.remote()), signal.SIGKILL)
    with pytest.raises(ShardUnavailable) as caught:
        sharded.search(question, as_of=when)
    assert month in caught.value.message and "could not be searched" in caught.value.message
