"""File size, load time and CPU latency of a saved model, for the model card.

    python benchmarks/model_latency.py server/model/aiface.keras [--runs 50]

Latency is one preprocessed image through the network (batch 1, one traced
tf.function, as the service runs it), after warm-up; decoding and face
finding are not included.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from aiface.bundle import load_bundle  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    start = time.perf_counter()
    bundle = load_bundle(args.model)
    load_s = time.perf_counter() - start
    size = bundle.metadata.image_size
    forward = tf.function(
        lambda x: bundle.model(x, training=False),
        input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)],
    )
    image = tf.constant(np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32))
    for _ in range(3):
        forward(image)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        forward(image).numpy()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    print(f"model: {args.model} ({bundle.metadata.backbone}, {size} px)")
    print(f"file size: {Path(args.model).stat().st_size / 2**20:.1f} MiB")
    print(f"load time: {load_s:.2f} s")
    print(
        f"latency (batch 1, {os.cpu_count()} cores): p50 {statistics.median(times):.1f} ms, "
        f"p95 {times[int(0.95 * (len(times) - 1))]:.1f} ms"
    )


if __name__ == "__main__":
    main()
