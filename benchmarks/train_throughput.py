"""Training images per second, per backbone and input size, on this machine.

    python benchmarks/train_throughput.py [--backbones efficientnet_lite0 resnet50] [--heads second_order average]
        [--sizes 224 128]

Times fine-tuning steps (the whole base trainable, BatchNorm frozen, as in
the second phase of ``training.train``) and head-only steps on random
batches of crops of each size, after warm-up steps that absorb graph tracing.
Weights are random: speed does not depend on them, and nothing is
downloaded. The data pipeline (decode, degrade, preprocess to 256 px, crop,
drawn by source) is timed on its own with --data-dir.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from training.models import backbones  # noqa: E402


def images_per_second(model: keras.Model, size: int, batch: int, steps: int) -> float:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    y = rng.integers(0, 2, batch)
    for _ in range(2):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * batch / (time.perf_counter() - start)


def pipeline_images_per_second(data_dir: str, image_size: int, crop: int, batches: int) -> float:
    from training.data.batches import SkipLog, make_training_dataset, sampling_weights
    from training.data.layout import list_split

    examples = list_split(data_dir, "train")
    dataset = make_training_dataset(
        examples, image_size, crop, 32, skips=SkipLog(), weights=sampling_weights(examples)
    ).take(batches)
    start = time.perf_counter()
    seen = sum(len(labels) for _, labels in dataset)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=["efficientnet_lite0", "resnet50"])
    parser.add_argument("--heads", nargs="+", default=list(backbones.HEADS), choices=backbones.HEADS)
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 128], help="training crop sizes")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--data-dir", help="also time the input pipeline on this folder")
    args = parser.parse_args()

    print(f"{os.cpu_count()} CPU cores, batch {args.batch_size}, {args.steps} timed steps")
    print("| backbone | head | crop | head only (img/s) | fine-tuning (img/s) |")
    print("|---|---|---|---|---|")
    for name, head, size in ((n, h, s) for n in args.backbones for h in args.heads for s in args.sizes):
        model = backbones.build_model(name, size, head=head)
        backbones.freeze_base(model)
        model.compile("adam", "sparse_categorical_crossentropy")
        frozen = images_per_second(model, size, args.batch_size, args.steps)
        backbones.unfreeze_top(model, 1.0)
        model.compile("adam", "sparse_categorical_crossentropy")
        full = images_per_second(model, size, args.batch_size, args.steps)
        print(f"| {name} | {head} | {size} | {frozen:.1f} | {full:.1f} |", flush=True)
    if args.data_dir:
        for size in args.sizes:
            rate = pipeline_images_per_second(args.data_dir, 256, size, 20)
            print(f"input pipeline (decode + degrade + preprocess to 256 + {size} px crop): {rate:.0f} img/s")


if __name__ == "__main__":
    main()
