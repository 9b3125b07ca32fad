"""Calibrate a trained model again, on your own held-out images, into a new bundle.

    python -m training.recalibrate MODEL DATA_DIR --out NEW.keras [--split valid]
        [--target-fpr 0.01] [--max-source-fpr 0.03] [--calibrate-laundered] [--overwrite]

Fits the remaining temperature correction on DATA_DIR's split (the 140k
layout; a sources.csv names the sources for the per-source limit), folds it
into the network and picks the threshold again (``training.models.calibration``),
then writes NEW.keras + NEW.json. The model given is never changed: a
different --out is required, or --overwrite to replace an existing one.
Useful when the photos a service sees differ from the training data's, or
to set another false-positive rate.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.cli import add_calibration_arguments, calibration_options, check_new_bundle, run_bundle_command


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.recalibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="the bundle's .keras file (its .json beside it)")
    parser.add_argument("data_dir", type=Path, help="folder in the 140k layout")
    parser.add_argument("--out", type=Path, required=True, help="the new bundle's .keras path")
    parser.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    add_calibration_arguments(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    args = parser.parse_args(argv)
    if args.out.suffix != ".keras":
        parser.error(f"--out must end in .keras, not {args.out}")
    return args


def recalibrate(args: argparse.Namespace) -> Path:
    check_new_bundle(args.model, args.out, args.overwrite)
    from aiface.bundle import load_bundle, save_bundle
    from training.data.layout import list_split
    from training.models.calibration import calibrate

    bundle = load_bundle(args.model)
    result = calibrate(bundle, list_split(args.data_dir, args.split), **calibration_options(args))
    path = save_bundle(bundle, args.out, overwrite=True)
    summary = result.summary
    laundered = (f"; laundered, {summary['laundered_false_positive_rate']:.1%} and "
                 f"{summary['laundered_recall_fake']:.1%}" if summary["laundered"] else "")
    print(f"wrote {path}: temperature x{result.temperature:.3f}, threshold {result.threshold:.4f}; on "
          f"{summary['images']} images {summary['false_positive_rate']:.1%} of reals called fake, "
          f"{summary['recall_fake']:.1%} of fakes caught{laundered}", file=sys.stderr)
    return path


def main(argv: list[str] | None = None) -> int:
    return run_bundle_command(recalibrate, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
