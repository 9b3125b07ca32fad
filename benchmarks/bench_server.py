"""Throughput and latency of the detection service on loopback.

Starts the service under gunicorn (one worker, gthread, as in production)
in three ways and drives each with 1 and 8 concurrent keep-alive clients on
127.0.0.1 for a few seconds; prints requests/s and p50/p95 latency:

- micro-batched: the service as shipped;
- batch size 1: the same inference thread, one image per forward pass, to
  separate what batching gains from what the traced forward pass gains;
- naive: a ``model.predict`` call in each request thread.

    .venv/bin/python benchmarks/bench_server.py                # EfficientNet-Lite0, 224 px, random weights
    .venv/bin/python benchmarks/bench_server.py --model server/model/aiface.keras

Random weights run exactly as fast as trained ones, so the default needs no
trained model.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def build_default_model(folder: Path) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from aiface.bundle import Bundle, Metadata, save_bundle
    from training.models.backbones import build_model

    model = build_model("efficientnet_lite0", 224)
    metadata = Metadata(backbone="efficientnet_lite0", image_size=224, name="bench", version="0")
    return save_bundle(Bundle(model, metadata), folder / "bench.keras")


def test_image() -> bytes:
    """A 256 px JPEG, the size of a typical face crop a page shows."""
    rng = np.random.default_rng(0)
    small = rng.integers(40, 220, (16, 16, 3), dtype=np.uint8)
    pixels = np.asarray(Image.fromarray(small).resize((256, 256), Image.BICUBIC))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


MODES = (
    ("micro-batched", {}),
    ("batch size 1", {"MAX_BATCH_SIZE": "1"}),
    ("naive model.predict", {"MICRO_BATCHING": "0"}),
)


def start_server(model: Path, port: int, settings: dict, threads: int) -> subprocess.Popen:
    # Face finding off: this compares ways of running the model; what MTCNN
    # costs on top is measured by benchmarks/load_test.py.
    env = {**os.environ, **settings, "MODEL_PATH": str(model), "TF_CPP_MIN_LOG_LEVEL": "3", "FACE_DETECTION": "0"}
    command = [
        sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "gthread",
        "--threads", str(threads), "--bind", f"127.0.0.1:{port}", "--timeout", "120",
        "server:create_app()",
    ]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_healthy(process: subprocess.Popen, port: int, deadline_s: float = 180.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        try:
            process.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            continue
        raise SystemExit(f"server exited with {process.returncode}:\n{process.stderr.read()}")
    raise SystemExit(f"server not healthy after {deadline_s} s")


def run_clients(client, clients: int) -> float:
    """Run ``client`` in that many threads at once; returns the wall time until all have finished."""
    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def drive(port: int, image: bytes, clients: int, seconds: float, max_requests: int) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < stop_at:
            with lock:
                if len(latencies) + errors[0] >= max_requests:
                    return
            start = time.perf_counter()
            connection.request("POST", "/v1/detect", body=image, headers={"Content-Type": "image/jpeg"})
            response = connection.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - start
            with lock:
                if response.status == 200 and "probability_fake" in json.loads(body):
                    latencies.append(elapsed)
                else:
                    errors[0] += 1

    wall = run_clients(client, clients)
    ms = np.asarray(latencies) * 1000.0
    return {
        "requests": len(latencies),
        "errors": errors[0],
        "rps": len(latencies) / wall,
        "p50": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        "p95": float(np.percentile(ms, 95)) if len(ms) else float("nan"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", type=Path, help="a saved bundle (default: EfficientNet-Lite0 224 px, random weights)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="per configuration")
    parser.add_argument("--max-requests", type=int, default=1000, help="per configuration")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args(argv)

    image = test_image()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or build_default_model(Path(folder))
        for mode, settings in MODES:
            port = free_port()
            process = start_server(model, port, settings, threads=max(args.concurrency) * 2)
            try:
                wait_healthy(process, port)
                drive(port, image, clients=1, seconds=1.0, max_requests=5)  # warm-up
                for clients in args.concurrency:
                    rows.append((mode, clients, drive(port, image, clients, args.seconds, args.max_requests)))
            finally:
                process.terminate()
                process.wait(timeout=60)

    print(f"model: {model if args.model else 'efficientnet_lite0 224 px (random weights)'}; "
          f"image: 256x256 JPEG ({len(image)} bytes); {os.cpu_count()} CPUs; gunicorn 1 worker gthread")
    print(f"{'server':<22}{'clients':>8}{'requests':>10}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}")
    for mode, clients, r in rows:
        print(f"{mode:<22}{clients:>8}{r['requests']:>10}{r['errors']:>8}{r['rps']:>9.1f}{r['p50']:>9.1f}{r['p95']:>9.1f}")


if __name__ == "__main__":
    main()
