"""`aiface scan` against the networks alone and against the service, side by side in one run.

    .venv/bin/python benchmarks/bench_scan.py ../shared/data --images 240 --seconds 10

On ``--images`` test images of the data set (spread over the split), in one process but the service:

- the model alone: the images preprocessed beforehand (whole image), through
  the traced forward pass (``Bundle.predictor``) in batches of 8: the
  model's own batched throughput;
- the networks alone with faces found: the face finder's network on every
  detector input the images need (the border pass too, where the first finds
  no face) and the model on every region scored, all made beforehand, in
  batches of 16 as the scan runs them: the ceiling of a scan with faces;
- ``aiface scan`` (``Scanner.scan``, the local engine): reading, SHA-256,
  provenance, decoding, face finding in batches, crops and the model, with
  faces found (as shipped) and with ``--whole-image``;
- the service under gunicorn (``server/gunicorn_conf.py``, one worker, face
  finding on as shipped) driven by 8 closed-loop keep-alive clients posting
  the same images in turn for ``--seconds``;

and the face finder's input (``aiface.faces.detector_input``, the exact
resize both runtimes share) per image, the first pass.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from bench_server import free_port, wait_healthy  # noqa: E402
from load_test import drive, start_gunicorn  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's aiface, before any installed copy

from aiface.bundle import load_bundle  # noqa: E402
from aiface.faces import default_finder, detector_input, faces_from_output, placement  # noqa: E402
from aiface.pipeline import prepare_many  # noqa: E402
from aiface.preprocess import load_image, to_model_input  # noqa: E402
from aiface.scan import Scanner  # noqa: E402
from training.data.layout import list_split  # noqa: E402


def timed_scan(scanner: Scanner, paths: list[str], workers: int) -> float:
    list(scanner.scan(paths[:32], workers))  # warm-up: traces, thread start
    start = time.perf_counter()
    rows = list(scanner.scan(paths, workers))
    elapsed = time.perf_counter() - start
    assert not [row for row in rows if row.get("error")]
    return len(paths) / elapsed


def networks_rate(images: list, predict, size: int, batch_size: int = 16) -> tuple[float, float]:
    """Images a second through the face finder's network and the model alone, inputs made beforehand; and the
    detector input's mean milliseconds per image (first pass)."""
    finder = default_finder()
    pixels = [image.pixels for image in images]
    start = time.perf_counter()
    places = [placement(p.shape[1], p.shape[0], False) for p in pixels]
    first = [detector_input(p, place) for p, place in zip(pixels, places, strict=True)]
    resize_ms = (time.perf_counter() - start) * 1000.0 / len(images)
    outputs = np.concatenate([finder._run(np.stack(first[at : at + batch_size])).numpy()
                              for at in range(0, len(first), batch_size)])
    border = [detector_input(p, placement(p.shape[1], p.shape[0], True))
              for p, place, output in zip(pixels, places, outputs, strict=True)
              if not faces_from_output(output, place, p.shape[1], p.shape[0])]
    detector_inputs = first + border
    regions = [region.input for item in prepare_many(images, finder, size) for region in item.regions]
    finder._run(np.stack(detector_inputs[:batch_size]))  # warm-up
    predict(np.stack(regions[:batch_size]))
    start = time.perf_counter()
    for at in range(0, len(detector_inputs), batch_size):
        finder._run(np.stack(detector_inputs[at : at + batch_size])).numpy()
    for at in range(0, len(regions), batch_size):
        predict(np.stack(regions[at : at + batch_size]))
    return len(images) / (time.perf_counter() - start), resize_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--model", type=Path, default=REPO / "server" / "model" / "aiface.keras")
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the 8 clients drive the service")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)

    examples = list_split(args.data_dir, "test")
    paths = [str(e.path) for e in examples[:: max(1, len(examples) // args.images)][: args.images]]
    bundle = load_bundle(args.model)
    size = bundle.metadata.image_size
    predict = bundle.predictor()
    images = [load_image(path) for path in paths]
    inputs = np.stack([to_model_input(image.pixels, size) for image in images])
    predict(inputs[:8])
    start = time.perf_counter()
    for first in range(0, len(inputs), 8):
        predict(inputs[first : first + 8])
    model_rate = len(inputs) / (time.perf_counter() - start)
    faces_networks_rate, resize_ms = networks_rate(images, predict, size)

    faces_rate = timed_scan(Scanner(args.model), paths, args.workers)
    whole_rate = timed_scan(Scanner(args.model, whole_image=True), paths, args.workers)

    port = free_port()
    server = start_gunicorn(args.model, port, 1, {})
    try:
        wait_healthy(server, port)
        uploads = [Path(path).read_bytes() for path in paths]
        drive(port, uploads, 8, seconds=2.0)  # warm-up
        service = drive(port, uploads, 8, seconds=args.seconds)
    finally:
        server.terminate()
        server.wait(timeout=60)

    load = os.getloadavg()[0]
    print(f"{len(paths)} test images of {args.data_dir} ({bundle.metadata.name} {bundle.metadata.version}, {size} px), "
          f"{os.cpu_count()} cores, load average {load:.1f}, {args.workers} scan workers")
    print(f"face finder input (exact resize, first pass): {resize_ms:.1f} ms per image")
    print(f"{'what':<56}{'img/s':>8}{'vs model':>10}{'vs nets+faces':>15}{'vs service':>12}")
    rows = [
        ("model alone, batch 8 (preprocessed inputs)", model_rate),
        ("networks alone, faces found, batch 16 (inputs made before)", faces_networks_rate),
        ("aiface scan, faces found (as shipped)", faces_rate),
        ("aiface scan --whole-image", whole_rate),
        (f"service, gunicorn 1 worker, 8 clients ({service['errors']} errors)", service["rps"]),
    ]
    for name, rate in rows:
        print(f"{name:<56}{rate:>8.1f}{rate / model_rate:>10.2f}{rate / faces_networks_rate:>15.2f}"
              f"{rate / service['rps']:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
