"""Load on `rag serve`: concurrent OpenAI-style clients for a fixed time against each backend, while an
admin uploads new articles. Reports requests served, errors (anything but a 200 with a well-formed answer)
and latency, and checks the uploads: each new article is searchable as soon as its upload returns, none is
lost, every citation names an article that exists, and `rag doctor` finds the index whole afterwards.

The server runs as its own process (`rag serve`), as in production; the clients are asyncio tasks on one
httpx connection pool in this process, so the machine's 2 cores are shared by server and clients alike."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from benchmarks.measure import free_port, percentile

RAG_BIN = str(Path(sys.executable).with_name("rag"))
UPLOAD_EVERY_S = 5.0


@contextlib.contextmanager
def server(work: Path, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    log = (work / "serve.log").open("wb")
    process = subprocess.Popen([RAG_BIN, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"rag serve exited: {(work / 'serve.log').read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("rag serve did not become healthy in 600 s")
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


def _article(n: int) -> tuple[str, str, str]:
    """A new article about invented people and places no other article names (made-up words from a seeded
    generator), the question that finds it, and its id: finding it proves it was indexed, not guessed."""
    rng = random.Random(n)

    def word() -> str:
        return "".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(3)).capitalize()

    person, family, place, firm = word(), word(), word(), word()
    text = (
        f"date 2021-0{1 + n % 9}-1{n % 10}\n{place} council names a harbour master\n\n"
        f"The council of {place} appointed {person} {family} as harbour master on Tuesday, replacing the head "
        f"of the {firm} shipping line. {family} said the port of {place} would reopen its northern quay."
    )
    return f"load-{n:03d}.txt", text, f"Who did the council of {place} appoint as harbour master?"


async def _clients(
    http: httpx.AsyncClient, model: str, questions: Sequence[str], clients: int, seconds: float, known: set[str]
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    shed: list[float] = []  # seconds to each 503: a refusal must come at once, not after a wait
    deadline = time.monotonic() + seconds

    async def one(worker: int) -> None:
        i = worker
        while time.monotonic() < deadline:
            question = questions[i % len(questions)]
            i += clients
            start = time.perf_counter()
            try:
                response = await http.post(
                    "/v1/chat/completions",
                    json={"model": model, "messages": [{"role": "user", "content": question}]},
                )
                took = time.perf_counter() - start
                body = response.json()
                if response.status_code == 503:  # shed by the local model's queue: wait as told, as a client should
                    shed.append(took)
                    pause = float(response.headers.get("Retry-After", "1"))
                    await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))
                    continue
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {body.get('error', {}).get('message', '')[:200]}")
                    continue
                cited = {c["doc_id"] for c in body["rag"]["citations"]}
                if not body["choices"][0]["message"]["content"] or not cited <= known:
                    errors.append(f"malformed answer or unknown citation: {sorted(cited - known)}")
                    continue
                latencies.append(took)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    started = time.perf_counter()
    await asyncio.gather(*(one(w) for w in range(clients)))
    wall = time.perf_counter() - started
    return {
        "model": model,
        "clients": clients,
        "seconds": round(wall, 1),
        "served": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:5],
        "shed": len(shed),
        "shed_p95_s": round(percentile(shed, 0.95), 3) if shed else None,
        "requests_per_s": round(len(latencies) / wall, 2),
        "p50_s": round(percentile(latencies, 0.5), 3) if latencies else None,
        "p95_s": round(percentile(latencies, 0.95), 3) if latencies else None,
        "max_s": round(max(latencies), 3) if latencies else None,
    }


async def _uploads(http: httpx.AsyncClient, seconds: float, known: set[str], first: int) -> dict[str, Any]:
    """Uploads one article every few seconds during the load and searches for it at once."""
    deadline = time.monotonic() + seconds
    uploaded: list[str] = []
    found_at_once = 0
    problems: list[str] = []
    n = first
    while time.monotonic() < deadline:
        name, text, question = _article(n)
        n += 1
        response = await http.post("/v1/documents", files=[("files", (name, text.encode(), "text/plain"))])
        report = response.json()
        if response.status_code != 200 or report.get("added") != [name]:
            problems.append(f"upload {name}: {response.status_code} {str(report)[:200]}")
            continue
        uploaded.append(name)
        known.add(name)
        found = (await http.post("/v1/search", json={"question": question, "k": 1})).json()
        if found["articles"] and found["articles"][0]["doc_id"] == name:
            found_at_once += 1
        else:
            problems.append(f"{name} not found by its question right after its upload")
        await asyncio.sleep(UPLOAD_EVERY_S)
    return {"uploaded": uploaded, "found_at_once": found_at_once, "problems": problems}


async def _phase(url: str, model: str, questions: Sequence[str], clients: int, seconds: float, first: int,
                 known: set[str]) -> dict[str, Any]:  # fmt: skip
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(600.0), limits=limits) as http:
        load, uploads = await asyncio.gather(
            _clients(http, model, questions, clients, seconds, known), _uploads(http, seconds, known, first)
        )
        listed = (await http.get("/v1/documents", params={"limit": 10_000})).json()
    present = {d["id"] for d in listed["data"]}
    lost = [name for name in uploads["uploaded"] if name not in present]
    return {**load, "uploads": {**uploads, "lost": lost, "uploaded": len(uploads["uploaded"])}}


def run(
    work: Path,
    seeds: Path,
    questions: Sequence[str],
    seconds: float,
    clients: int,
    models: Sequence[str],
    parallel: Sequence[int] = (1,),
) -> dict[str, Any]:
    """Each model under load; the local model once per value of `parallel` (`RAG_LOCAL_PARALLEL`, answers
    decoded at once), each on a server started with it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "OPENAI_"))}
    env.update(
        RAG_INDEX_DIR=str(work / "serve-index"),
        RAG_SEED_DIR=str(seeds),
        XDG_DATA_HOME=str(work / "serve-data"),
        RAG_PROGRESS="false",
        RAG_RATE_LIMIT_PER_MINUTE="1000000",
    )
    results: dict[str, Any] = {"clients": clients, "seconds": seconds, "phases": []}
    known = {p.name for p in seeds.iterdir() if p.is_file()}
    for n, slots in enumerate(parallel):
        env["RAG_LOCAL_PARALLEL"] = str(slots)
        with server(work, env) as url:
            for model in models if n == 0 else [m for m in models if m == "rag-local"]:
                first = 100 * len(results["phases"])
                phase = asyncio.run(_phase(url, model, questions, clients, seconds, first, known))
                results["phases"].append({**phase, "local_parallel": slots if model == "rag-local" else None})
    doctor = subprocess.run([RAG_BIN, "doctor"], env=env, capture_output=True, text=True)
    results["doctor_ok"] = doctor.returncode == 0
    results["doctor"] = (doctor.stdout + doctor.stderr)[-500:]
    return results
