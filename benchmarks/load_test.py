"""Load test of the detection service under gunicorn on loopback.

Starts ``gunicorn -c server/gunicorn_conf.py`` (as in production) on
127.0.0.1 and drives ``POST /v1/detect`` with 1, 8 and 32 closed-loop
keep-alive clients for a fixed time each, then far beyond capacity (clients
that wait Retry-After after a 503); prints requests/s, p50/p95/p99 latency of
the scored requests, refusals, errors and the server's peak memory. Then
checks that memory stays bounded: the workers' resident memory after N
requests and after 3N.

    .venv/bin/python benchmarks/load_test.py                   # EfficientNet-Lite0 224 px, random weights
    .venv/bin/python benchmarks/load_test.py --model server/model/aiface.keras --seconds 10

Random weights run exactly as fast as trained ones, so the default needs no
trained model (the bundled one is used when it exists).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from bench_server import build_default_model, free_port, run_clients, test_image, wait_healthy

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "server" / "model" / "aiface.keras"


def start_gunicorn(model: Path, port: int, workers: int, settings: dict) -> subprocess.Popen:
    env = {**os.environ, **settings, "MODEL_PATH": str(model), "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "gunicorn", "-c", "server/gunicorn_conf.py", "--workers", str(workers),
               "--bind", f"127.0.0.1:{port}", "server:create_app()"]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def server_pids(master: int) -> list[int]:
    """The gunicorn master and its workers."""
    pids = [master]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def memory_kib(pids: list[int], field: str) -> int:
    """Sum of a /proc/PID/status field (VmRSS: now, VmHWM: peak) over the processes."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def drive(port: int, image: bytes | list[bytes], clients: int, seconds: float | None = None,
          requests: int | None = None) -> dict:
    """Closed-loop clients until ``seconds`` pass or ``requests`` have been answered in all.

    Given several images, each client posts them in turn, client ``c`` starting at the ``c``-th.
    """
    images = [image] if isinstance(image, bytes) else list(image)
    turn = itertools.count()
    ok: list[float] = []
    refused: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds if seconds else float("inf")

    def done() -> bool:
        answered = len(ok) + len(refused) + len(errors)
        return time.monotonic() >= stop_at or (requests is not None and answered >= requests)

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        sent = next(turn)
        while not done():
            upload = images[sent % len(images)]
            sent += 1
            start = time.perf_counter()
            try:
                connection.request("POST", "/v1/detect", body=upload, headers={"Content-Type": "image/jpeg"})
                response = connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as error:
                with lock:
                    errors.append(type(error).__name__)
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                continue
            elapsed = time.perf_counter() - start
            with lock:
                if response.status == 200 and "probability_fake" in json.loads(body):
                    ok.append(elapsed)
                elif response.status == 503 and response.getheader("Retry-After"):
                    refused.append(elapsed)
                else:
                    errors.append(str(response.status))
            if response.status == 503 and response.getheader("Retry-After"):
                # As a well-behaved client does; retrying at once would turn
                # the refusals themselves into the load.
                time.sleep(min(float(response.getheader("Retry-After")), max(0.0, stop_at - time.monotonic())))
        connection.close()

    wall = run_clients(client, clients)
    ms = np.asarray(ok) * 1000.0

    def pct(values, q):
        return float(np.percentile(values, q)) if len(values) else float("nan")

    return {
        "ok": len(ok), "refused": len(refused), "errors": len(errors), "error_kinds": sorted(set(errors)),
        "rps": len(ok) / wall, "p50": pct(ms, 50), "p95": pct(ms, 95), "p99": pct(ms, 99),
        "refused_p50": pct(np.asarray(refused) * 1000.0, 50),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a saved bundle (default: the bundled model, else "
                        "EfficientNet-Lite0 224 px with random weights)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--overload", type=int, default=128, help="clients for the beyond-capacity run (0: skip)")
    parser.add_argument("--memory-requests", type=int, default=500, help="N of the RSS check after N and 3N requests")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a service setting for the server's environment, e.g. FACE_DETECTION=0")
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)

    image = test_image()
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or (BUNDLED if BUNDLED.exists() else build_default_model(Path(folder)))
        port = free_port()
        process = start_gunicorn(model, port, args.workers, settings)
        rows = []
        try:
            wait_healthy(process, port)
            # Drained, so that a chatty server can never block on a full pipe.
            threading.Thread(target=process.stderr.read, daemon=True).start()
            drive(port, image, clients=1, requests=10)  # warm-up
            pids = server_pids(process.pid)
            idle_kib = memory_kib(pids, "VmRSS")
            for clients in args.concurrency:
                rows.append((str(clients), drive(port, image, clients, seconds=args.seconds)))
            if args.overload:
                rows.append((f"{args.overload} (overload)", drive(port, image, args.overload, seconds=args.seconds)))
            peak_kib = memory_kib(pids, "VmHWM")
            drive(port, image, clients=8, requests=args.memory_requests)
            after_n = memory_kib(pids, "VmRSS")
            drive(port, image, clients=8, requests=2 * args.memory_requests)
            after_3n = memory_kib(pids, "VmRSS")
            peak_kib = max(peak_kib, memory_kib(pids, "VmHWM"))
            worker_pids = set(server_pids(process.pid))
        finally:
            process.terminate()
            process.wait(timeout=60)

    name = model if args.model or model == BUNDLED else "efficientnet_lite0 224 px (random weights)"
    print(f"model: {name}; image: 256x256 JPEG ({len(image)} bytes); {os.cpu_count()} CPUs; "
          f"gunicorn -c server/gunicorn_conf.py, {args.workers} worker(s); {args.seconds:g} s per row"
          + "".join(f"; {key}={value}" for key, value in settings.items()))
    print(f"{'clients':<16}{'ok':>7}{'503':>7}{'errors':>8}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
          f"{'503 p50 ms':>12}")
    for label, r in rows:
        print(f"{label:<16}{r['ok']:>7}{r['refused']:>7}{r['errors']:>8}{r['rps']:>8.1f}{r['p50']:>9.1f}"
              f"{r['p95']:>9.1f}{r['p99']:>9.1f}{r['refused_p50']:>12.1f}"
              + (f"  errors: {', '.join(r['error_kinds'])}" if r["errors"] else ""))
    print(f"server memory (master + workers): idle {idle_kib / 1024:.0f} MiB, peak {peak_kib / 1024:.0f} MiB; "
          f"after N={args.memory_requests} more requests {after_n / 1024:.0f} MiB, after 3N {after_3n / 1024:.0f} MiB "
          f"({(after_3n - after_n) / 1024:+.1f} MiB)")
    print(f"workers unchanged throughout: {worker_pids == set(pids)}")


if __name__ == "__main__":
    main()
