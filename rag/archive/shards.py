"""The shards of an archive: in this process, or Ray actors when `ray_address` is set.

On Ray each shard is an actor that Ray restarts when it dies (its process killed, its node lost); a
restarted shard loads its partitions from disk again, and the calls that were waiting on it are retried.
A question waits for that at most `ray_wait_seconds`; past it, the search fails naming the dates it
could not search, rather than answer from part of the archive without saying so.
"""

from __future__ import annotations

import heapq
import logging
import socket
from pathlib import Path
from typing import Any

from rag.archive.catalog import Catalog
from rag.archive.shard import Shard
from rag.archive.wire import CandidateRequest, Candidates, Gathered, Key
from rag.config import Settings
from rag.errors import ConfigError, ShardUnavailable
from rag.store.sparse import KeywordStats

log = logging.getLogger(__name__)


def connect(address: str | None) -> Any:
    """Ray, connected to the cluster at `address` (None: the one `RAY_ADDRESS` names, else a new local one)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("Ray is not installed", hint="pip install 'rag[ray]'") from None
    if not ray.is_initialized():
        _check_reachable(address)
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, configure_logging=False)
    return ray


REACH_SECONDS = 5.0


def _check_reachable(address: str | None) -> None:
    """Ray retries an address that does not answer for minutes, printing its own log lines; one TCP connect
    says at once that nothing listens there. `auto` and a missing address are Ray's to resolve."""
    if not address or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        raise ConfigError(
            f"the Ray address {address!r} has no port", hint="give host:port (6379 by default), or ray://host:10001"
        )
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=REACH_SECONDS).close()
    except OSError as exc:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}",
            hint="start it (`ray start --head`), or set RAG_RAY_ADDRESS (or `rag index --ray ADDRESS`) to its head",
        ) from None


class Shards:
    """Spreads the catalog's partitions over `ray_shards` shards (round robin by month, so a question
    about one season keeps every shard busy) and merges what they return."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root = root
        self.settings = settings
        self.catalog = Catalog.load(root)
        self._stamp = self._catalog_stamp()
        self.groups: list[dict[str, int]] = []
        self.workers: list[Any] = []
        self._start()

    def _catalog_stamp(self) -> float:
        return (self.root / "catalog.json").stat().st_mtime_ns

    def _start(self) -> None:
        names = sorted(self.catalog.partitions)
        count = (
            max(1, min(self.settings.scale_out.ray_shards, len(names))) if self.settings.scale_out.ray_address else 1
        )
        self.groups = [{name: self.catalog.partitions[name].number for name in names[i::count]} for i in range(count)]
        self.workers = [self._worker(group) for group in self.groups]

    def _worker(self, group: dict[str, int]) -> Any:
        if not self.settings.scale_out.ray_address:
            return Shard(str(self.root), group)
        ray = connect(self.settings.scale_out.ray_address)
        actor = ray.remote(Shard).options(
            max_restarts=-1, max_task_retries=-1, num_cpus=0, scheduling_strategy="SPREAD"
        )
        return actor.remote(str(self.root), group)

    def refresh(self) -> None:
        """Follow the catalog: a run that added a month is searched from the next question on."""
        stamp = self._catalog_stamp()
        if stamp != self._stamp:
            self.stop()
            self.catalog, self._stamp = Catalog.load(self.root), stamp
            self._start()

    def stop(self) -> None:
        if self.settings.scale_out.ray_address and self.workers:
            ray = connect(self.settings.scale_out.ray_address)
            for worker in self.workers:
                ray.kill(worker)
        self.workers = []

    def _each(self, method: str, *args: Any, wanted: set[str] | None = None) -> list[Any]:
        """`method(*args)` on every shard holding one of the `wanted` partitions (all when None), in shard
        order: called directly in process, as actor calls on Ray, all of them in flight at once."""
        chosen = [i for i, group in enumerate(self.groups) if wanted is None or wanted & group.keys()]
        if not self.settings.scale_out.ray_address:
            return [getattr(self.workers[i], method)(*args) for i in chosen]
        ray = connect(self.settings.scale_out.ray_address)
        from ray.exceptions import GetTimeoutError, RayActorError

        refs = {i: getattr(self.workers[i], method).remote(*args) for i in chosen}
        results, failed = [], []
        for i, ref in refs.items():
            try:
                results.append(ray.get(ref, timeout=self.settings.scale_out.ray_wait_seconds))
            except RayActorError:
                # Killed for good (`ray.kill`, or its constructor failed): start it again once, same wait.
                self.workers[i] = self._worker(self.groups[i])
                try:
                    retry = getattr(self.workers[i], method).remote(*args)
                    results.append(ray.get(retry, timeout=self.settings.scale_out.ray_wait_seconds))
                except (RayActorError, GetTimeoutError) as exc:
                    failed.append((i, exc))
            except GetTimeoutError as exc:
                failed.append((i, exc))
        if failed:
            months = sorted(name for i, _ in failed for name in self.groups[i] if wanted is None or name in wanted)
            raise ShardUnavailable(
                f"the archive's partitions {', '.join(months)} could not be searched: their shard did not "
                f"answer within {self.settings.scale_out.ray_wait_seconds:g} s ({type(failed[0][1]).__name__})",
                hint="nothing was answered from the rest; ask again once the Ray cluster has restarted the shard, "
                "or raise RAG_RAY_WAIT_SECONDS",
            )
        return results

    def stats(self, terms: list[str]) -> tuple[KeywordStats, KeywordStats]:
        """Archive-wide BM25 statistics (articles, chunks) for the question's terms."""
        articles, chunks = KeywordStats(), KeywordStats()
        for a, c in self._each("stats", terms):
            articles, chunks = articles + a, chunks + c
        return articles, chunks

    def candidates(self, request: CandidateRequest) -> Candidates:
        """The archive's best `n` per ranking: each shard's best `n`, merged by score."""
        found = self._each("candidates", request, wanted=set(request.partitions))

        def best(lists: list[list[tuple[float, Key]]]) -> list[tuple[float, Key]]:
            return heapq.nsmallest(request.n, (item for one in lists for item in one), key=_order)

        return Candidates(best([f.dense for f in found]), best([f.keyword for f in found]))

    def gather(self, wanted: dict[str, list[str]], terms: list[str], stats: KeywordStats) -> list[Gathered]:
        """The candidate articles, from the shards holding them."""
        return [one for part in self._each("gather", wanted, terms, stats, wanted=set(wanted)) for one in part]


def _order(item: tuple[float, Key]) -> tuple[float, int]:
    """Best score first; equal scores in archive order (partition, then position), as one index lists them."""
    score, key = item
    return -score, key.tie
