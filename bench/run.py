"""make bench: the sidecar against curl, curl + sha256sum, curl + fsync and aria2c.

Starts nginx on loopback (one plain server, one capped at 25 MB/s per connection),
then alternates the tools over the same files and prints medians, ratios, CPU
seconds and peak RSS. Every timed run starts on a quiet disk and warm memory (see
``quiet_disk`` and ``recycle_memory``). Linux only (reads /proc). Needs nginx, curl
and aria2c.
"""

from __future__ import annotations

import argparse
import compileall
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sidecar.manifest import DEFAULT_PIECE_SIZE
from sidecar.transfer.hashing import sha256_file_and_pieces
from tests.support.sidecar_proc import Sidecar

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent
FINAL = ("ready", "failed", "cancelled")
QUIET = {"MODEL_MANAGER_LOG_LEVEL": "INFO"}  # as shipped; the test helper logs DEBUG
ARIA2C = [
    "aria2c",
    "-q",
    "-x16",
    "-s16",
    "-k1M",
    "--file-allocation=none",
    "--allow-overwrite=true",
]
PLAIN_PORT, CAPPED_PORT, TLS_PORT = 18480, 18481, 18482
NGINX_CONF = """
worker_processes 2;
error_log {root}/error.log;
pid {root}/nginx.pid;
{user}
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  default_type application/octet-stream;
  server {{ listen 127.0.0.1:{plain}; root {root}/www;
           location /api/models/ {{ default_type application/json; }} }}
  server {{ listen 127.0.0.1:{capped}; root {root}/www; limit_rate 25m;
           location /api/models/ {{ default_type application/json; }} }}
  server {{ listen 127.0.0.1:{tls} ssl; root {root}/www;
           ssl_certificate {root}/tls/chain.pem; ssl_certificate_key {root}/tls/key.pem;
           location /api/models/ {{ default_type application/json; }} }}
}}
"""


def publish(www: Path, model_id: str, size: int) -> None:
    """One file with the manifest `publish` writes: its SHA-256 and its pieces'."""
    folder = www / "storage/models" / model_id / "1"
    folder.mkdir(parents=True)
    with open(folder / "w.bin", "wb") as handle:
        block = os.urandom(4 * MiB)
        for offset in range(0, size, len(block)):
            piece = block[: min(len(block), size - offset)]
            piece = offset.to_bytes(8, "little") + piece[8:]  # no two blocks alike
            handle.write(piece)
    whole, pieces = sha256_file_and_pieces(folder / "w.bin", DEFAULT_PIECE_SIZE)
    files = [{"path": "w.bin", "size_bytes": size, "sha256": whole}]
    if pieces:
        files[0] |= {"piece_size_bytes": DEFAULT_PIECE_SIZE, "piece_sha256": pieces}
    version = {"version": "1", "size_bytes": size, "files": files, "requires": [], "extra": {}}
    entry = {"id": model_id, "name": model_id, "task": "bench", "languages": [],
             "default_version": "1", "versions": [version]}  # fmt: skip
    (www / "api/models").mkdir(parents=True, exist_ok=True)
    (www / "api/models" / model_id).write_text(json.dumps(entry))


def proc_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds, peak RSS bytes) of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    status = Path(f"/proc/{pid}/status").read_text()
    peak = next(
        int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM")
    )
    return cpu, peak


def timed(command: list[str]) -> tuple[float, float, int]:
    started = time.monotonic()
    before = os.times()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    after = os.times()
    wall = time.monotonic() - started
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu, 0


def sidecar_install(work: Path, port: int, model_ids: list[str], size: int,
                    extra: list[str] | None = None,
                    scheme: str = "http") -> dict[str, float]:  # fmt: skip
    home = work / "home"  # removed after each install, with the disk then synced
    url = f"{scheme}://127.0.0.1:{port}"
    sidecar = Sidecar(home, url, args=extra or [], env=QUIET).start()
    try:
        info = sidecar.call("getInfo")
        # The app's sidecar runs for hours: its transfer worker (started a second after
        # the sidecar) is up before an install, and its start-up is not the download's.
        sidecar.wait_for(lambda: sidecar.call("getInfo")["workerPid"], what="the worker")
        recycle_memory(work, size)  # once the process is up, as for the other tools
        started = time.monotonic()
        tasks = [sidecar.call("install", {"modelId": m})["taskId"] for m in model_ids]
        for task in tasks:
            assert wait_for_end(sidecar, task) == "ready"
        wall = time.monotonic() - started
        # Both processes: the sidecar and its transfer worker. Peak RSS is the sum of
        # each one's peak, an upper bound: shared library pages count twice.
        worker = sidecar.call("getInfo")["workerPid"]
        usages = [proc_usage(info["pid"]), proc_usage(worker)]
        cpu, peak = sum(u[0] for u in usages), sum(u[1] for u in usages)
    finally:
        sidecar.stop()
        sidecar.cleanup()
        shutil.rmtree(home, ignore_errors=True)
        quiet_disk()
    return {"wall": wall, "cpu": cpu, "rss": peak}


def first_answer(work: Path, runs: int = 9) -> dict[str, float]:
    """Spawn to the first getModelPath answer on a fresh home, as the node-agent's first
    question after the app starts: the median of ``runs`` starts."""
    times = []
    for run in range(runs):
        home = work / f"start-{run}"
        env = {**os.environ, **QUIET, "MODEL_MANAGER_HOME": str(home)}
        request = b'{"jsonrpc":"2.0","id":1,"method":"getModelPath","params":{"modelId":"m"}}\n'
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "sidecar"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                   cwd=ROOT)  # fmt: skip
        assert process.stdin and process.stdout
        process.stdin.write(request)
        process.stdin.flush()
        answer = process.stdout.readline()
        times.append(time.perf_counter() - started)
        assert b"MODEL_NOT_AVAILABLE" in answer, answer
        process.stdin.close()
        process.wait(30)
        shutil.rmtree(home, ignore_errors=True)
    return {"median_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000}


def make_certificates(folder: Path) -> Path:
    """A throwaway CA and a certificate for 127.0.0.1; the CA's PEM file."""
    import trustme

    folder.mkdir()
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(folder / "chain.pem"))
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    return folder / "ca.pem"


def quiet_disk() -> None:
    """Start every timed run with nothing waiting to be written or discarded: the
    sidecar fsyncs, so a backlog left by the files generated or deleted before it
    (this disk is mounted with discard) would slow it and never curl."""
    os.sync()


def recycle_memory(work: Path, size: int) -> None:
    """Write and delete a scratch file a quarter larger than the download, then sync,
    right before a timed run: its page cache then lands in memory that was just in
    use. This VM (KVM with free-page reporting) hands memory left free for a second
    or two back to the host, and writing 1 GiB into such pages took 1.6-1.8 s of
    system time instead of 0.2 s. Without this, a tool started right after the last
    one's output was deleted (curl, after the sidecar) ran on warm pages, and one
    started a moment later (the sidecar, after its own start-up) on cold ones."""
    scratch = work / "scratch.bin"
    block = bytes(MiB)
    with open(scratch, "wb") as handle:
        for _ in range(size * 5 // 4 // MiB + 1):
            handle.write(block)
    scratch.unlink()
    quiet_disk()


def probe_model_path(work: Path, port: int, model_ids: list[str],
                     extra: list[str] | None = None) -> dict[str, float]:  # fmt: skip
    """getModelPath round trips while ``model_ids`` download at once. One thread writes
    each request and reads up to its answer, as the node-agent's event loop does, so
    the client adds no thread hand-offs of its own to what is measured."""
    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    env = {**os.environ, **QUIET, "MODEL_MANAGER_HOME": str(home),
           "MODEL_MANAGER_REPOSITORY": f"http://127.0.0.1:{port}"}  # fmt: skip
    command = [sys.executable, "-m", "sidecar", "--max-concurrent-tasks", str(len(model_ids)),
               *(extra or [])]  # fmt: skip
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env=env, cwd=ROOT)  # fmt: skip
    assert process.stdin and process.stdout
    requests, answers = process.stdin, process.stdout
    ids = itertools.count(1)
    ended: dict[str, str] = {}

    def call(method: str, params: dict[str, Any]) -> dict[str, Any]:
        request_id = next(ids)
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        requests.write(json.dumps(message).encode() + b"\n")
        requests.flush()
        while True:
            line = json.loads(answers.readline())
            if line.get("id") == request_id:
                return dict(line)
            if line.get("method") == "task.state" and line["params"]["state"] in FINAL:
                ended[line["params"]["taskId"]] = line["params"]["state"]

    try:
        tasks = [call("install", {"modelId": m})["result"]["taskId"] for m in model_ids]
        latencies = []
        while len(ended) < len(tasks):
            sent = time.perf_counter()
            call("getModelPath", {"modelId": model_ids[0]})  # an error until installed
            latencies.append(time.perf_counter() - sent)
        assert set(ended.values()) == {"ready"}, ended
    finally:
        requests.close()
        process.wait(60)
    latencies.sort()
    return {
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "samples": len(latencies),
    }


def wait_for_end(sidecar: Sidecar, task_id: str) -> str:
    """The task's final state, from its ``task.state`` notification (as the app learns
    it; polling would add up to a poll interval to the sidecar's time)."""

    def ended() -> str | None:
        for note in sidecar.notifications:
            params = note.get("params", {})
            state = params.get("state") if note["method"] == "task.state" else None
            if params.get("taskId") == task_id and state in FINAL:
                return str(state)
        return None

    return str(sidecar.wait_for(ended, timeout=600, what=f"task {task_id} to end"))


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def paired_walls(ours: list[dict[str, float]], theirs: list[dict[str, float]]) -> list[float]:
    """Wall ratios run by run: the tools alternate, so each pair saw the same machine
    state, and their spread shows how much of a median ratio is this machine's noise."""
    return [a["wall"] / b["wall"] for a, b in zip(ours, theirs, strict=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big-gib", type=float, default=1.0)
    parser.add_argument("--rss-gib", type=float, default=4.0, help="file size for the peak-RSS run")
    args = parser.parse_args()
    for tool in ("nginx", "curl", "aria2c", "sha256sum"):
        if shutil.which(tool) is None:
            sys.exit(f"bench needs {tool}: apt-get install -y nginx curl aria2 coreutils")
    # An installed sidecar has its .pyc files (pip writes them); this checkout, run where
    # PYTHONDONTWRITEBYTECODE is set, would compile every module it imports at every
    # start (~0.1 s of CPU here), a cost no user sees.
    compileall.compile_dir(ROOT / "sidecar", quiet=1)
    work = Path(tempfile.mkdtemp(prefix="mm-bench-"))
    www = work / "www"
    big, capped, huge = int(args.big_gib * 1024) * MiB, 256 * MiB, int(args.rss_gib * 1024) * MiB
    print(f"generating files in {work} ...", flush=True)
    publish(www, "big", big)
    publish(www, "capped", capped)
    publish(www, "huge", huge)
    for n in (1, 2, 3):
        publish(www, f"load{n}", big)
    quiet_disk()
    ca = make_certificates(work / "tls")
    user = "user root;" if os.geteuid() == 0 else ""
    (work / "nginx.conf").write_text(
        NGINX_CONF.format(root=work, user=user, plain=PLAIN_PORT, capped=CAPPED_PORT, tls=TLS_PORT)
    )
    nginx = subprocess.Popen(
        ["nginx", "-c", str(work / "nginx.conf"), "-p", str(work), "-g", "daemon off;"]
    )
    time.sleep(0.5)
    out = work / "out.bin"
    plain_url = f"http://127.0.0.1:{PLAIN_PORT}/storage/models/big/1/w.bin"
    capped_url = f"http://127.0.0.1:{CAPPED_PORT}/storage/models/capped/1/w.bin"
    tls_url = f"https://127.0.0.1:{TLS_PORT}/storage/models/big/1/w.bin"
    results: dict[str, list[dict[str, float]]] = {k: [] for k in
        ("sidecar", "curl", "curl+sha256sum", "curl+fsync", "sidecar-capped",
         "aria2c-capped", "sidecar-tls", "curl-tls", "curl-tls+fsync")}  # fmt: skip
    try:
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}", flush=True)
            results["sidecar"].append(sidecar_install(work, PLAIN_PORT, ["big"], big))
            recycle_memory(work, big)
            wall, cpu, _ = timed(["curl", "-s", "-o", str(out), plain_url])
            results["curl"].append({"wall": wall, "cpu": cpu})
            hash_wall, hash_cpu, _ = timed(["sha256sum", str(out)])
            results["curl+sha256sum"].append({"wall": wall + hash_wall, "cpu": cpu + hash_cpu})
            sync_wall, sync_cpu, _ = timed(["sync", str(out)])  # coreutils: fsync the file
            results["curl+fsync"].append({"wall": wall + sync_wall, "cpu": cpu + sync_cpu})
            out.unlink()
            results["sidecar-capped"].append(sidecar_install(work, CAPPED_PORT, ["capped"], capped))
            recycle_memory(work, capped)
            wall, cpu, _ = timed([*ARIA2C, "-d", str(work), "-o", "aria.bin", capped_url])
            results["aria2c-capped"].append({"wall": wall, "cpu": cpu})
            (work / "aria.bin").unlink(missing_ok=True)
            results["sidecar-tls"].append(
                sidecar_install(work, TLS_PORT, ["big"], big, ["--ca-bundle", str(ca)], "https")
            )
            recycle_memory(work, big)
            wall, cpu, _ = timed(["curl", "-s", "--cacert", str(ca), "-o", str(out), tls_url])
            results["curl-tls"].append({"wall": wall, "cpu": cpu})
            sync_wall, sync_cpu, _ = timed(["sync", str(out)])
            results["curl-tls+fsync"].append({"wall": wall + sync_wall, "cpu": cpu + sync_cpu})
            out.unlink()
            walls = {name: runs[-1]["wall"] for name, runs in results.items()}
            print(
                f"  plain: sidecar {walls['sidecar']:.2f} s, curl {walls['curl']:.2f} s;"
                f" capped: sidecar {walls['sidecar-capped']:.2f} s,"
                f" aria2c {walls['aria2c-capped']:.2f} s;"
                f" tls: sidecar {walls['sidecar-tls']:.2f} s, curl {walls['curl-tls']:.2f} s",
                flush=True,
            )
        rss = sidecar_install(work, PLAIN_PORT, ["huge"], 0) if args.rss_gib else {"rss": 0}
        loaded = probe_model_path(work, PLAIN_PORT, ["load1", "load2", "load3"])
        start = first_answer(work)
    finally:
        nginx.terminate()
        nginx.wait()
    side, curl, both = results["sidecar"], results["curl"], results["curl+sha256sum"]
    side_c, aria = results["sidecar-capped"], results["aria2c-capped"]
    side_t, curl_t = results["sidecar-tls"], results["curl-tls"]
    print(f"\n{'':34}{'wall s':>9}{'cpu s':>9}{'peak RSS MiB':>14}")
    for name, runs in results.items():
        rss_text = f"{median(runs, 'rss') / MiB:14.0f}" if "rss" in runs[0] else f"{'-':>14}"
        print(f"{name:34}{median(runs, 'wall'):9.2f}{median(runs, 'cpu'):9.2f}{rss_text}")
    ratios = [
        (f"plain {args.big_gib:g} GiB: sidecar wall / curl wall",
         median(side, "wall") / median(curl, "wall"), "<= 1.1", paired_walls(side, curl)),
        (f"plain {args.big_gib:g} GiB: sidecar cpu / (curl + sha256sum)",
         median(side, "cpu") / median(both, "cpu"), "<= 1.5", None),
        ("capped 256 MiB: sidecar wall / aria2c -x16 wall",
         median(side_c, "wall") / median(aria, "wall"), "<= 0.9", paired_walls(side_c, aria)),
        (f"TLS {args.big_gib:g} GiB: sidecar wall / curl wall",
         median(side_t, "wall") / median(curl_t, "wall"), "<= 1.2", paired_walls(side_t, curl_t)),
        (f"peak RSS installing {args.rss_gib:g} GiB (MiB)", rss["rss"] / MiB, "<= 100", None),
        ("getModelPath p99 during 3 downloads (ms)", loaded["p99_ms"], "< 2", None),
        ("spawn to first getModelPath answer (ms)", start["median_ms"], "<= 300", None),
    ]  # fmt: skip
    print()
    for label, value, target, pairs in ratios:
        paired = f"  runs {min(pairs):.2f}-{max(pairs):.2f}" if pairs else ""
        print(f"{label:48} = {value:7.2f}  (target {target}){paired}")
    # Not a target: the sidecar makes its bytes durable before it records them, and
    # curl's timing never includes writing them to the disk.
    durable = median(side, "wall") / median(results["curl+fsync"], "wall")
    print(f"{'context: sidecar wall / (curl + fsync)':48} = {durable:7.2f}")
    durable_t = median(side_t, "wall") / median(results["curl-tls+fsync"], "wall")
    print(f"{'context: TLS sidecar wall / (curl + fsync)':48} = {durable_t:7.2f}")
    print(f"getModelPath p50 {loaded['p50_ms']:.2f} ms over {loaded['samples']:.0f} calls")
    print(f"spawn to first answer: slowest of the starts {start['max_ms']:.0f} ms")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
