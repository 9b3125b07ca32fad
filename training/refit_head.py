"""A trained model's final layer fitted anew on its frozen features, into a new bundle.

    python -m training.refit_head MODEL DATA_DIR --out NEW.keras [--aligned ALIGNED_DIR ...]
        [--view clean --view degraded --view laundered] [--c 0.001 --c 0.01 ...]
        [--fair-share 0.4] [--aligned-share 0.3] [--exclude-source S] [--cache DIR]
        [--name aiface] [--version 3.0.0] [--target-fpr 0.01] [--max-source-fpr 0.03] [--overwrite]

Everything up to the final ``logits`` layer stays as trained; that layer becomes an L2-regularised
logistic regression (scikit-learn) on the features of DATA_DIR's ``train`` images and of the aligned
pairs' (``training.aligned``) under each ``--view`` (``training.features``), every image weighted so that
the fair pairs fill ``--fair-share`` and the aligned pairs ``--aligned-share`` of the total, as
``training.train`` draws its batches. The regularisation strength is chosen among ``--c`` on the fair
pairs' and the aligned pairs' ``valid`` images, as they are and laundered (``training.metrics.
selection_auc``, which selects ``training.train``'s epochs); the bundle is then calibrated on ``valid``
as ``training.train`` calibrates (``training.calibration``) and written with the fit in its metadata.

Why: on two CPU cores fine-tuning the network on aligned pairs moved too slowly (the model card's
aiface 3.0.0 attempt), while a linear probe on aiface 2.2.0's frozen features separated TAEF2
reconstructions from their originals at AUC 0.90 (issue 22). The network and its export are unchanged
but for one layer's weights, so the service and the extension run the result as they run the model
it came from. MODEL is never changed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from training import cli
from training.features import VIEWS
from training.new_head import (
    add_bundle_arguments,
    check_bundle_arguments,
    check_out,
    choose_c,
    margin_as_logits,
    run,
    save_new_head,
)

DEFAULT_C = (0.0003, 0.001, 0.003, 0.01)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.refit_head", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="the trained bundle's .keras file (its .json beside it)")
    parser.add_argument("data_dir", type=Path, help="folder in the 140k layout")
    parser.add_argument("--out", type=Path, required=True, help="the new bundle's .keras path")
    parser.add_argument("--aligned", action="append", default=[], type=Path, metavar="DIR",
                        help="a folder of aligned pairs made by training.aligned (repeatable)")
    parser.add_argument("--view", action="append", choices=VIEWS, help="views of the training images "
                        "(repeatable; default: all three)")
    parser.add_argument("--fair-share", type=cli.probability, default=0.4)
    parser.add_argument("--aligned-share", type=cli.probability, default=0.3)
    parser.add_argument("--exclude-source", action="append", default=[], help="leave a source out of train and valid")
    add_bundle_arguments(parser, DEFAULT_C)
    args = parser.parse_args(argv)
    check_bundle_arguments(parser, args, DEFAULT_C, argv)
    if args.fair_share + (args.aligned_share if args.aligned else 0.0) > 1.0:
        parser.error(f"--fair-share and --aligned-share add up to more than 1 "
                     f"({args.fair_share} + {args.aligned_share})")
    args.view = args.view or list(VIEWS)
    return args


def example_weights(examples, fair_share: float, aligned_sources, aligned_share: float) -> np.ndarray:
    """Each example's weight, so that every (source, label) group weighs what ``sampling_weights`` draws of it;
    mean 1."""
    from training.data import sampling_weights

    groups = [(e.source, e.label) for e in examples]
    chances = sampling_weights(examples, cli.FAIR_SOURCES, fair_share, sorted(aligned_sources), aligned_share)
    counts: dict = {}
    for group in groups:
        counts[group] = counts.get(group, 0) + 1
    weights = np.array([chances.get(group, 0.0) / counts[group] for group in groups])
    return weights * len(weights) / weights.sum()


def fold_logistic(model, coef: np.ndarray, intercept: float, mean: np.ndarray, scale: np.ndarray) -> None:
    """Make the two-way softmax of the ``logits`` layer equal ``sigmoid(coef . (x - mean) / scale + intercept)``:
    its fake-minus-real logit is that linear function, split evenly between the two outputs."""
    from training.backbones import LOGITS_LAYER

    w = coef / scale
    model.get_layer(LOGITS_LAYER).set_weights(margin_as_logits(w, intercept - float(np.dot(w, mean))))


def refit(args: argparse.Namespace) -> Path:
    check_out(args)
    from aiface.bundle import load_bundle
    from training.backbones import has_heads
    from training.features import extract
    from training.layout import list_split
    from training.metrics import selection_auc

    bundle = load_bundle(args.model)
    if has_heads(bundle.model):
        raise ValueError(f"{args.model} has a decoder head (training.decoder_head); refit the model it was made "
                         "from and add the decoder head again")
    excluded = set(args.exclude_source)

    def split(folder, name):
        return [e for e in list_split(folder, name) if e.source not in excluded]

    train_examples = split(args.data_dir, "train")
    valid_examples = split(args.data_dir, "valid")
    aligned_train = [e for folder in args.aligned for e in split(folder, "train")]
    aligned_valid = [e for folder in args.aligned for e in split(folder, "valid")]
    aligned_sources = {e.source for e in aligned_train}

    def features(examples, view, what):
        return extract(bundle, args.model, examples, view, args.cache, progress=f"{what} ({view})")

    rows, kept = [], []
    for view in args.view:
        for examples, what in ((train_examples, "train"), (aligned_train, "aligned train")):
            if examples:
                x, ok = features(examples, view, what)
                rows.append(x)
                kept += ok
    x_train = np.concatenate(rows)
    y_train = np.array([e.label for e in kept])
    weights = example_weights(kept, args.fair_share, aligned_sources, args.aligned_share)
    mean = x_train.mean(axis=0)
    scale = x_train.std(axis=0) + 1e-6
    x_train = (x_train - mean) / scale

    selection = [e for e in valid_examples if e.source in cli.FAIR_SOURCES] + aligned_valid
    selection_views = []
    for view in ("clean", "laundered"):
        x, ok = features(selection, view, "selection")
        selection_views.append(((x - mean) / scale, np.array([e.label for e in ok]), [e.source for e in ok]))

    score, c, fit, scores = choose_c(
        x_train, y_train, weights, args.c,
        lambda candidate: [selection_auc(labels, candidate.predict_proba(x)[:, 1], sources, aligned_sources)
                           for x, labels, sources in selection_views],
        "selection")
    fold_logistic(bundle.model, fit.coef_[0], float(fit.intercept_[0]), mean, scale)

    record = {
        "views": args.view, "c": c, "c_tried": sorted(args.c),
        "selection_auc": {"mean": score, "clean": scores[0], "laundered": scores[1]},
        "train_images": len(kept), "aligned_train_pairs": len(aligned_train) // 2,
        "aligned": [str(folder) for folder in args.aligned], "fair_share": args.fair_share,
        "aligned_share": args.aligned_share, "excluded_sources": sorted(excluded),
    }
    return save_new_head(bundle, args, "refit_head", record, valid_examples, f"C={c:g}, selection {score:.4f}")


def main(argv: list[str] | None = None) -> int:
    return run(refit, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
