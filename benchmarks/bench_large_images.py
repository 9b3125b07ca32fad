"""What large images cost the service: peak memory per worker and time per image.

Starts ``gunicorn -c server/gunicorn_conf.py`` (one worker, as shipped: face
finding on) on 127.0.0.1 with the bundled model, then

1. posts a 7000 x 7000 PNG (a flat picture with a small pattern: about 150 KB
   on the wire, 49 MP decoded) from 8 clients at once, and reports the
   worker's peak resident memory above its idle level (the peak is reset
   through ``/proc/PID/clear_refs`` before the burst, and also sampled every
   10 ms) and the wall time until all 8 were answered;
2. posts a 6000 x 6000 JPEG (smooth noise, quality 90) a few times from one
   client and reports the median time to the answer and the worker's CPU time
   for it (user + system, from /proc: less disturbed than the wall time when
   other work shares the cores).

    .venv/bin/python benchmarks/bench_large_images.py            # or --model PATH --clients 8 --repeat 3

Prints one line per figure and the status codes seen.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import io
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
from bench_server import free_port, run_clients, test_image, wait_healthy
from load_test import BUNDLED, memory_kib, server_pids, start_gunicorn
from PIL import Image


def large_png(side: int = 7000) -> bytes:
    pixels = np.full((side, side, 3), 128, np.uint8)
    pixels[side // 2 - 64 : side // 2 + 64, side // 2 - 64 : side // 2 + 64] = [200, 150, 120]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=9)
    return buffer.getvalue()


def large_jpeg(side: int = 6000) -> bytes:
    rng = np.random.default_rng(0)
    small = rng.integers(30, 230, (48, 48, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(small).resize((side, side), Image.BICUBIC).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def post(port: int, body: bytes, content_type: str, timeout_s: float = 300.0) -> tuple[int, float]:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request("POST", "/v1/detect", body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        connection.close()


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_pid(master: int) -> int:
    return next(pid for pid in server_pids(master) if pid != master)


def burst(port: int, pid: int, body: bytes, clients: int) -> dict:
    idle_kib = memory_kib([pid], "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    sampled = [idle_kib]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            sampled.append(memory_kib([pid], "VmRSS"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    statuses: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def client() -> None:
        status, _ = post(port, body, "image/png")
        with lock:
            statuses[status] += 1

    wall_s = run_clients(client, clients)
    stop.set()
    sampler.join()
    peak_kib = max(memory_kib([pid], "VmHWM"), max(sampled))
    return {"idle_mib": idle_kib / 1024, "peak_above_idle_mib": (peak_kib - idle_kib) / 1024,
            "wall_s": wall_s, "statuses": dict(statuses), "after_mib": memory_kib([pid], "VmRSS") / 1024}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=BUNDLED)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jpeg-only", action="store_true", help="skip the 8 concurrent PNG uploads")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a service setting")
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)
    png, jpeg = large_png(), large_jpeg()
    print(f"7000 x 7000 PNG: {len(png) / 1024:.0f} KiB; 6000 x 6000 JPEG: {len(jpeg) / 1024:.0f} KiB", flush=True)
    port = free_port()
    process = start_gunicorn(args.model, port, 1, settings)
    try:
        wait_healthy(process, port)
        pid = worker_pid(process.pid)
        post(port, test_image(), "image/jpeg")  # warm-up: the face finder's first call
        result = None if args.jpeg_only else burst(port, pid, png, args.clients)
        if result:
            print(f"{args.clients} concurrent 7000x7000 PNG uploads: worker idle {result['idle_mib']:.0f} MiB, "
                  f"peak +{result['peak_above_idle_mib']:.0f} MiB above idle, after {result['after_mib']:.0f} MiB, "
                  f"all answered in {result['wall_s']:.1f} s, statuses {result['statuses']}", flush=True)
        times, cpu, statuses = [], [], collections.Counter()
        for _ in range(args.repeat):
            before = cpu_seconds(pid)
            status, seconds = post(port, jpeg, "image/jpeg")
            cpu.append(cpu_seconds(pid) - before)
            statuses[status] += 1
            times.append(seconds)
        print(f"6000x6000 JPEG, one client: median {statistics.median(times):.2f} s "
              f"(each: {', '.join(f'{t:.2f}' for t in times)} s), worker CPU time median "
              f"{statistics.median(cpu):.2f} s, statuses {dict(statuses)}; load average {os.getloadavg()[0]:.1f}",
              flush=True)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except Exception:
            process.kill()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
