"""What reading a file's provenance costs, and the service's memory with crafted files mixed into the load.

1. Per file: ``aiface.provenance.read_provenance`` on photos of the data set
   (``../shared/data``, JPEG, no manifest) and on each crafted or signed file of
   ``tests/provenance_fixtures.py`` (C2PA-signed, a manifest at an address,
   10,000 text chunks, too many JUMBF boxes, XMP written every way); p50 and p99
   of the time per file, and the peak of Python's allocations while reading.
2. Under load: the service under gunicorn (``server/gunicorn_conf.py``, as in
   production) on loopback, 16 closed-loop clients for a fixed time, one request
   in four a crafted file; the statuses answered per kind of file (a plain or
   signed file must never come back ``tampered``, a declaration never lost) and
   the server's peak and final resident memory.

    .venv/bin/python benchmarks/provenance_cost.py --photos 300 --seconds 30
"""

from __future__ import annotations

import argparse
import collections
import http.client
import itertools
import json
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from bench_server import free_port, run_clients, wait_healthy  # noqa: E402
from load_test import BUNDLED, memory_kib, server_pids, start_gunicorn  # noqa: E402

from aiface.provenance import read_provenance  # noqa: E402
from provenance_fixtures import fixtures  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "real_vs_fake" / "real-vs-fake" / "test"
CRAFTED = ("c2pa_remote.jpg", "c2pa_many_boxes.jpg", "png_text_bomb.png", "xmp_utf16.jpg", "c2pa_many_actions.jpg")


def photos(count: int) -> list[bytes]:
    files = sorted((DATA / "real").glob("*.jpg"))[: count // 2] + sorted((DATA / "fake").glob("*.jpg"))[: count // 2]
    return [file.read_bytes() for file in files]


def per_file(groups: dict[str, list[bytes]], reads: int = 200) -> dict:
    """Each group read about ``reads`` times (a small group again and again), timed; then once under tracemalloc."""
    out = {}
    for name, files in groups.items():
        times = []
        for data in files * max(1, reads // len(files)):
            started = time.perf_counter()
            read_provenance(data)
            times.append((time.perf_counter() - started) * 1000)
        peak = 0.0
        for data in files:
            tracemalloc.start()
            read_provenance(data)
            peak = max(peak, tracemalloc.get_traced_memory()[1] / 2**20)
            tracemalloc.stop()
        out[name] = {"reads": len(times), "p50_ms": round(float(np.percentile(times, 50)), 2),
                     "p99_ms": round(float(np.percentile(times, 99)), 2), "peak_python_mib": round(peak, 3),
                     "mean_bytes": int(np.mean([len(data) for data in files]))}
    return out


def under_load(mix: list[tuple[str, bytes, str]], clients: int, seconds: float) -> dict:
    port = free_port()
    process = start_gunicorn(BUNDLED, port, 1, {})
    try:
        wait_healthy(process, port)
        pids = server_pids(process.pid)
        statuses: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        lock = threading.Lock()
        order = itertools.cycle(mix)
        stop_at = time.monotonic() + seconds

        def client() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            while time.monotonic() < stop_at:
                with lock:
                    kind, data, mime = next(order)
                connection.request("POST", "/v1/detect", body=data, headers={"Content-Type": mime})
                response = connection.getresponse()
                body = json.loads(response.read())
                answer = body["provenance"]["status"] if response.status == 200 else f"http {response.status}"
                with lock:
                    statuses[kind][answer] += 1

        rss_before = memory_kib(pids, "VmRSS")
        run_clients(client, clients)
        return {"statuses": {kind: dict(counts) for kind, counts in statuses.items()},
                "rss_before_mib": rss_before / 1024, "peak_mib": memory_kib(pids, "VmHWM") / 1024,
                "rss_after_mib": memory_kib(pids, "VmRSS") / 1024}
    finally:
        process.terminate()
        process.wait(timeout=30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--no-load", action="store_true", help="only the per-file costs")
    args = parser.parse_args(argv)
    found = fixtures()
    plain = photos(args.photos)
    signed = [found[name][0] for name in ("c2pa_ai.jpg", "c2pa_camera.jpg", "c2pa_ai.png", "c2pa_signed.jpg")]
    groups = {"photos (JPEG, no manifest)": plain, "C2PA-signed (JPEG, PNG)": signed,
              **{name: [found[name][0]] for name in CRAFTED}}
    print(json.dumps({"per_file": per_file(groups)}, indent=1))
    if args.no_load:
        return
    mime = {"jpg": "image/jpeg", "png": "image/png"}
    mix = []
    for index, data in enumerate(plain[:48]):
        mix.append(("photo", data, "image/jpeg"))
        if index % 3 == 2:
            name = CRAFTED[(index // 3) % len(CRAFTED)]
            mix.append((name, found[name][0], mime[name.rsplit(".", 1)[1]]))
        if index % 12 == 5:
            mix.append(("c2pa_ai.jpg", found["c2pa_ai.jpg"][0], "image/jpeg"))
    print(json.dumps({"under_load": under_load(mix, args.clients, args.seconds)}, indent=1))


if __name__ == "__main__":
    main()
