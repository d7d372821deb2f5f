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
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing import Process, Queue
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.postgres import PostgresCluster, postgres_bindir
from tests.support.repo_helpers import free_port

MODELS = [f"model-{n:02d}" for n in range(40)]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


async def post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, body: bytes
) -> tuple[int, dict[str, str]]:
    """One keep-alive HTTP/1.1 POST by hand: a client this thin leaves the CPU to the
    server (httpx cost twice the server's CPU per event here)."""
    writer.write(
        b"POST /api/model-usage/events HTTP/1.1\r\nHost: " + host.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
    await reader.readexactly(int(headers.get("content-length", "0")))
    return int(head[0].split()[1]), headers


async def client(n: int, url: str, stop: float, stats: dict[str, Any]) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    # Its own loopback address: the per-address limit applies as to 200 machines.
    connection = await asyncio.open_connection(host, port, local_addr=(f"127.0.1.{n % 250 + 1}", 0))
    reader, writer = connection
    try:
        for i in itertools.count():
            if time.monotonic() >= stop:
                return
            # Zipf-like demand: a few models get most events.
            model = MODELS[min(len(MODELS) - 1, int(len(MODELS) * ((i * 7 + n) % 97 / 97) ** 3))]
            kind = "MODEL_NOT_AVAILABLE" if i % 3 == 0 else "request"
            body = json.dumps({"model_id": model, "kind": kind}).encode()
            started = time.perf_counter()
            try:
                status, headers = await asyncio.wait_for(
                    post(reader, writer, parts.netloc, body), 30
                )
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                stats["errors"] += 1
                return
            stats["event_latency"].append(time.perf_counter() - started)
            if status == 201:
                stats["accepted"] += 1
            elif status == 429:
                stats["limited"] += 1
                await asyncio.sleep(float(headers.get("retry-after", "1")))
            else:
                stats["errors"] += 1
    finally:
        writer.close()


def reader(url: str, stop: float, results: Queue) -> None:  # type: ignore[type-arg]
    """In a process of its own: its latencies are the server's, not the load's loop."""
    latencies = []
    with httpx.Client(base_url=url, timeout=30) as http:
        while time.monotonic() < stop:
            started = time.perf_counter()
            http.get("/api/model-usage/ranking", params={"limit": 100}).raise_for_status()
            latencies.append(time.perf_counter() - started)
            time.sleep(0.05)
    results.put({"ranking_latency": latencies})


async def _clients(first: int, count: int, url: str, stop: float) -> dict[str, Any]:
    stats: dict[str, Any] = {"accepted": 0, "limited": 0, "errors": 0, "event_latency": []}
    tasks = [client(n, url, stop, stats) for n in range(first, first + count)]
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=stop - time.monotonic() + 60)
    stats["load_cpu"] = time.process_time()
    return stats


def clients(first: int, count: int, url: str, stop: float, results: Queue) -> None:  # type: ignore[type-arg]
    results.put(asyncio.run(_clients(first, count, url, stop)))


def load(url: str, total: int, seconds: float, processes: int) -> dict[str, Any]:
    """``total`` clients spread over ``processes`` load processes, plus one reader."""
    results: Queue = Queue()  # type: ignore[type-arg]
    stop = time.monotonic() + seconds
    share = -(-total // processes)
    workers = [
        Process(target=clients, args=(i * share, min(share, total - i * share), url, stop, results))
        for i in range(processes)
    ]
    workers.append(Process(target=reader, args=(url, stop, results)))
    for worker in workers:
        worker.start()
    merged: dict[str, Any] = {
        "accepted": 0, "limited": 0, "errors": 0, "event_latency": [], "ranking_latency": [],
        "load_cpu": 0.0,
    }  # fmt: skip
    for _ in workers:
        for key, value in results.get(timeout=seconds + 120).items():
            merged[key] += value
    for worker in workers:
        worker.join(30)
    return merged


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
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--load-processes", type=int, default=2, help="processes sending events")
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
        print(f"{args.clients} clients in {args.load_processes} processes, {args.seconds:g} s, "
              f"{args.workers} uvicorn workers, "
              f"PostgreSQL {bindir.parent.name}", flush=True)  # fmt: skip

        def cpu() -> float:
            family = [psutil.Process(server.pid), *psutil.Process(server.pid).children(True)]
            return sum(sum(p.cpu_times()[:2]) for p in family)

        def pg_cpu() -> float:
            found = [p for p in psutil.process_iter(["cmdline"]) if str(cluster.data) in
                     " ".join(p.info["cmdline"] or [])]  # fmt: skip
            family = found + [c for p in found for c in p.children(True)]
            return sum(sum(p.cpu_times()[:2]) for p in family)

        server_before, pg_before = cpu(), pg_cpu()
        stats = load(url, args.clients, args.seconds, args.load_processes)
        server_cpu, db_cpu = cpu() - server_before, pg_cpu() - pg_before
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
        )
        print(f"rate-limited (429):  {stats['limited']}   errors: {stats['errors']}")
        print(f"event POST latency:  p50 {percentile(events, .5) * 1e3:.1f} ms, "
              f"p99 {percentile(events, .99) * 1e3:.1f} ms")  # fmt: skip
        print(f"ranking GET latency: p50 {percentile(ranking, .5) * 1e3:.1f} ms, "
              f"p99 {percentile(ranking, .99) * 1e3:.1f} ms over {len(ranking)} reads "
              f"(mean {statistics.fmean(ranking) * 1e3:.1f} ms)")  # fmt: skip
        verdict = "none lost" if in_db == stats["accepted"] else "MISMATCH"
        print(f"events in database:  {in_db} ({verdict})")
        load_cpu = stats["load_cpu"]
        print(f"CPU seconds:         server {server_cpu:.1f}, PostgreSQL {db_cpu:.1f}, "
              f"load {load_cpu:.1f} (of {2 * args.seconds:g} on 2 cores)")  # fmt: skip
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
