"""Does scoring native-resolution crops beat plain downscaling on large images?

For every image of a labelled folder (140k layout) whose shorter side is at
least ``--min-factor`` times the model's input size, scores:

- downscale: the whole centred square resized to the input size (the default);
- crops: the mean log-odds of a ``--grid`` x ``--grid`` set of native-resolution crops;
- combined: what the service returns with ``MULTICROP=1`` (server/multicrop.py);

and prints ROC AUC, accuracy at the model's threshold and log loss of each.

    .venv/bin/python benchmarks/multicrop_vs_downscale.py server/model/aiface.keras DATA_DIR --split test

Only large originals answer the question: images upscaled to look large
carry no native-resolution detail, so the script refuses to guess when the
folder has none and says how large its largest image is.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from server import multicrop
from training import metrics
from training.bundle import load_bundle
from training.layout import list_split
from training.preprocess import ImageError, load_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--min-factor", type=float, default=2.0)
    parser.add_argument("--grid", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="stop after this many large images (0: all)")
    args = parser.parse_args(argv)

    bundle = load_bundle(args.model)
    size, threshold = bundle.metadata.image_size, bundle.metadata.threshold
    examples = list_split(args.data_dir, args.split)
    # Shuffled so that --limit takes both classes, not the first class folder only.
    examples = [examples[i] for i in np.random.default_rng(0).permutation(len(examples))]
    labels, scores = [], {"downscale": [], "crops": [], "combined": []}
    largest, skipped = (0, 0), 0
    start = time.perf_counter()
    for example in examples:
        try:
            pixels = load_image(example.path).pixels
        except ImageError:
            skipped += 1
            continue
        largest = max(largest, (min(pixels.shape[:2]), max(pixels.shape[:2])))
        if not multicrop.is_large(pixels, size, args.min_factor):
            continue
        p = bundle.predict_fake(np.stack(multicrop.model_inputs(pixels, size, args.grid)))
        labels.append(example.label)
        scores["downscale"].append(p[0])
        scores["crops"].append(multicrop.mean_log_odds(p[1:]))
        scores["combined"].append(multicrop.combine(list(p)))
        if args.limit and len(labels) >= args.limit:
            break
    elapsed = time.perf_counter() - start

    need = int(np.ceil(args.min_factor * size))
    print(f"model {args.model} ({bundle.metadata.backbone}, {size} px); {args.data_dir} split {args.split}: "
          f"{len(examples)} images, {skipped} unreadable, {len(labels)} with a shorter side >= {need} px")
    if not labels:
        print(f"nothing to measure: the largest image has a shorter side of {largest[0]} px "
              f"(need {need}); run this on a folder of large originals")
        return 2
    labels = np.asarray(labels)
    print(f"{int((labels == 0).sum())} real, {int((labels == 1).sum())} fake; grid {args.grid}x{args.grid} "
          f"({args.grid ** 2 + 1} forward passes per image for crops/combined); {elapsed:.1f} s")
    print(f"{'method':<12}{'ROC AUC':>9}{'accuracy':>10}{'log loss':>10}")
    for method, values in scores.items():
        values = np.asarray(values)
        auc = metrics.roc_auc(labels, values)
        print(f"{method:<12}{(auc if auc is not None else float('nan')):>9.4f}"
              f"{metrics.accuracy(labels, values, threshold):>10.4f}{metrics.log_loss(labels, values):>10.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
