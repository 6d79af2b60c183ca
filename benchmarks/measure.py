"""Timing and memory helpers. The machines are shared and noisy, so every number is the median of
repeated runs, and comparisons are ratios of medians measured in the same run."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def peak_rss_mb(command: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Peak resident memory of a child process (its own high-water mark, read by a wrapper so that
    processes run before it do not count), and its stdout."""
    wrapper = (
        "import json, resource, subprocess, sys\n"
        "out = subprocess.run(sys.argv[1:], capture_output=True, text=True, check=True).stdout\n"
        "print(json.dumps({'rss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, 'out': out}))\n"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    data = json.loads(done.stdout)
    return data["rss_kb"] / 1024, data["out"]


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")


def free_port() -> int:
    """A loopback port no one listens on now, for a server a benchmark starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def proc_status_mb(field: str, pid: int | str = "self") -> float:
    """A memory figure of a running process from /proc (VmHWM, RssAnon, RssFile, ...), in MB."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(line.split()[1] for line in status if line.startswith(f"{field}:"))) / 1024


def peak_rss_of(pid: int | str = "self") -> float:
    """A running process's peak RSS in MB (VmHWM). Not `ru_maxrss`: getrusage keeps a parent's peak across
    fork and exec, so a child started by a big process would report the parent's."""
    return proc_status_mb("VmHWM", pid)


def machine() -> dict[str, Any]:
    """The machine a result was measured on."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    memory_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 2**20, 1),
        "python": platform.python_version(),
    }
