"""make bench-repo: usage events from 200 concurrent clients for 30 s against the
reference server on PostgreSQL (uvicorn, several workers), reading the ranking
meanwhile. Loopback only, bounded in time. Prints events/s accepted, latencies, and
whether the database holds exactly the events the server accepted.

Each client sends from its own loopback address (127.0.1.N), so the per-address limit
applies as it would to 200 machines. Starts its own throwaway PostgreSQL cluster
(Debian's ``postgresql`` package) and stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.postgres import PostgresCluster, postgres_bindir
from tests.support.repo_helpers import free_port

MODELS = [f"model-{n:02d}" for n in range(40)]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


async def client(n: int, url: str, stop: float, stats: dict[str, list[float] | int]) -> None:
    transport = httpx.AsyncHTTPTransport(local_address=f"127.0.1.{n % 250 + 1}")
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=30) as http:
        for i in itertools.count():
            if time.monotonic() >= stop:
                return
            # Zipf-like demand: a few models get most events.
            model = MODELS[min(len(MODELS) - 1, int(len(MODELS) * ((i * 7 + n) % 97 / 97) ** 3))]
            kind = "MODEL_NOT_AVAILABLE" if i % 3 == 0 else "request"
            started = time.perf_counter()
            try:
                reply = await http.post(
                    "/api/model-usage/events", json={"model_id": model, "kind": kind}
                )
            except httpx.HTTPError:
                stats["errors"] += 1  # type: ignore[operator]
                continue
            stats["event_latency"].append(time.perf_counter() - started)  # type: ignore[union-attr]
            if reply.status_code == 201:
                stats["accepted"] += 1  # type: ignore[operator]
            elif reply.status_code == 429:
                stats["limited"] += 1  # type: ignore[operator]
                await asyncio.sleep(float(reply.headers.get("Retry-After", "1")))
            else:
                stats["errors"] += 1  # type: ignore[operator]


async def reader(url: str, stop: float, latencies: list[float]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while time.monotonic() < stop:
            started = time.perf_counter()
            reply = await http.get("/api/model-usage/ranking", params={"limit": 100})
            reply.raise_for_status()
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)


async def load(url: str, clients: int, seconds: float) -> dict[str, list[float] | int]:
    stats: dict[str, list[float] | int] = {
        "accepted": 0, "limited": 0, "errors": 0, "event_latency": [], "ranking_latency": [],
    }  # fmt: skip
    stop = time.monotonic() + seconds
    tasks = [client(n, url, stop, stats) for n in range(clients)]
    tasks.append(reader(url, stop, stats["ranking_latency"]))  # type: ignore[arg-type]
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + 60)
    return stats


def wait_up(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            if httpx.get(url + "/api/model-usage/ranking").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    bindir = postgres_bindir()
    if bindir is None:
        sys.exit("PostgreSQL is not installed: apt-get install postgresql")
    folder = Path(tempfile.mkdtemp(prefix="model-manager-load-"))
    folder.chmod(0o755)
    cluster = PostgresCluster(bindir, folder / "pg").start()
    server = None
    try:
        db_url = cluster.create_database("usage")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [
                sys.executable, "-m", "model_repo", "serve", "--storage", str(folder / "repo"),
                "--usage-db", db_url, "--port", str(port), "--workers", str(args.workers),
                "--log-level", "warning",
            ],
            env={**os.environ, "MODEL_REPO_TOKEN": ""}, start_new_session=True,
        )  # fmt: skip
        wait_up(url, server)
        print(f"{args.clients} clients, {args.seconds:g} s, {args.workers} uvicorn workers, "
              f"PostgreSQL {bindir.parent.name}", flush=True)  # fmt: skip
        stats = asyncio.run(load(url, args.clients, args.seconds))
        from model_repo.usage_pg import PostgresUsageStore

        store = PostgresUsageStore(db_url, pool_size=1)
        in_db = store.event_count()
        plan = store.explain_ranking(100)
        store.close()
        events = stats["event_latency"]
        ranking = stats["ranking_latency"]
        assert isinstance(events, list) and isinstance(ranking, list)
        print(
            f"accepted events:     {stats['accepted']} ({stats['accepted'] / args.seconds:.0f}/s)"
        )  # type: ignore[operator]
        print(f"rate-limited (429):  {stats['limited']}   errors: {stats['errors']}")
        print(f"event POST latency:  p50 {percentile(events, .5) * 1e3:.1f} ms, "
              f"p99 {percentile(events, .99) * 1e3:.1f} ms")  # fmt: skip
        print(f"ranking GET latency: p50 {percentile(ranking, .5) * 1e3:.1f} ms, "
              f"p99 {percentile(ranking, .99) * 1e3:.1f} ms over {len(ranking)} reads "
              f"(mean {statistics.fmean(ranking) * 1e3:.1f} ms)")  # fmt: skip
        verdict = "none lost" if in_db == stats["accepted"] else "MISMATCH"
        print(f"events in database:  {in_db} ({verdict})")
        print("ranking plan:\n  " + plan.replace("\n", "\n  "))
        if in_db != stats["accepted"]:
            sys.exit(1)
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
