"""Evaluate a model on one split of a labelled folder and write a report.

    python -m training.evaluate MODEL DATA_DIR --split test --out REPORT_DIR

writes ``REPORT_DIR/report.json``, ``report.md``, ``roc.png`` and
``reliability.png``: the metrics of ``training.evaluation.metrics`` at the model's
stored threshold, over all images, for the 140k sample, per source, and
under a robustness sweep (JPEG re-compression, downscaling and blur of both
classes). Images are scored as the service scores them (``aiface.pipeline``): faces
found, each face's region scored, the highest score the image's;
``--whole-image`` scores each whole image's centred square instead, and the
report says which. ``--launder both|fake|real`` applies the standard laundering
(``training.data.launder.launder``) to the chosen classes first: the shortcut
audit, where a model that keys on image quality rather than generation
artefacts falls apart.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

from aiface.bundle import Bundle, ModelLoadError, load_bundle
from aiface.faces import FaceFinder, default_finder
from aiface.pipeline import FACES, WHOLE_IMAGE
from training.cli import fail
from training.data import launder as laundering
from training.data.launder import LAUNDER_QUALITY, LAUNDER_SIZE, downscale, jpeg_recompress, launder
from training.data.layout import SPLITS, LayoutError
from training.evaluation import metrics
from training.evaluation.render import SUBSET_140K, markdown, number, plot_reliability, plot_roc
from training.evaluation.scoring import score_examples
from training.reports import list_examples

LAUNDER_LABELS = {"none": (), "both": (0, 1), "fake": (1,), "real": (0,)}
SWEEP = {
    "jpeg_90": ("JPEG quality 90", partial(jpeg_recompress, quality=90)),
    "jpeg_70": ("JPEG quality 70", partial(jpeg_recompress, quality=70)),
    "jpeg_50": ("JPEG quality 50", partial(jpeg_recompress, quality=50)),
    "jpeg_30": ("JPEG quality 30", partial(jpeg_recompress, quality=30)),
    "downscale_128": ("downscaled to 128 px", partial(downscale, size=128)),
    "downscale_64": ("downscaled to 64 px", partial(downscale, size=64)),
    "laundered": (f"laundered ({LAUNDER_SIZE} px + JPEG {LAUNDER_QUALITY})", launder),
    "blur": (f"Gaussian blur, sigma {laundering.BLUR_SIGMA} px", laundering.blur),
    "down_up": (f"downscaled to {laundering.DOWN_UP_FACTOR:g}x and back", laundering.down_up),
}


class ReportExistsError(FileExistsError):
    """A report folder that already holds files, without --overwrite."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate",
        description="Evaluate a model on a folder in the 140k layout and write a report.",
    )
    parser.add_argument(
        "model", type=Path, help="the model's .keras file (its .json beside it), or a folder holding one"
    )
    parser.add_argument(
        "data_dir", type=Path,
        help="folder in the 140k layout, {train,valid,test}/{real,fake}, or the extension's reports export",
    )
    parser.add_argument("--split", default="test", choices=SPLITS, help="split to evaluate (default: test)")
    parser.add_argument("--out", type=Path, required=True, help="folder for report.json, report.md and the plots")
    parser.add_argument("--overwrite", action="store_true", help="replace the report files in an existing --out folder")
    parser.add_argument(
        "--launder",
        default="none",
        choices=tuple(LAUNDER_LABELS),
        help=f"launder ({LAUNDER_SIZE} px + JPEG {LAUNDER_QUALITY}) both classes, only fakes or only reals "
        "before scoring (default: none); the robustness sweep is then skipped",
    )
    parser.add_argument(
        "--no-sweep", action="store_true", help="skip the robustness sweep (9 more passes over the data)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per model call (default: 64)")
    parser.add_argument(
        "--whole-image", action="store_true",
        help="score each whole image (its centred square) instead of the faces found in it, as the service does",
    )
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be positive")
    return args


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse a folder that holds anything unless asked: never destroy a user's report."""
    if out.exists() and not out.is_dir():
        raise ReportExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ReportExistsError(f"report folder {out} is not empty; pass --overwrite to replace its report")


def _launder_description(mode: str) -> str:
    if mode == "none":
        return "none"
    whom = {"both": "both classes", "fake": "fakes only", "real": "reals only"}[mode]
    return f"{whom} downscaled to {LAUNDER_SIZE} px and re-saved as JPEG quality {LAUNDER_QUALITY}"


def finder_for(whole_image: bool) -> FaceFinder | None:
    """The service's face finder, or None to score whole images (--whole-image)."""
    return None if whole_image else default_finder()


def scoring_description(whole_image: bool) -> str:
    return WHOLE_IMAGE if whole_image else FACES


def robustness_sweep(bundle: Bundle, examples, batch_size: int, finder: FaceFinder | None) -> dict:
    threshold = bundle.metadata.threshold
    results = {}
    for key, (description, transform) in SWEEP.items():
        scores = score_examples(bundle, examples, transform=transform, batch_size=batch_size, progress=key,
                                finder=finder)
        labels, p_fake = scores.labels, scores.p_fake
        block = metrics.summary(labels, p_fake, threshold)
        in_subset = scores.sources == SUBSET_140K
        results[key] = {
            "description": description,
            **{
                name: block[name]
                for name in ("images", "accuracy", "balanced_accuracy", "roc_auc", "false_positive_rate", "recall_fake")
            },
            "subset_140k_roc_auc": metrics.roc_auc(labels[in_subset], p_fake[in_subset]) if in_subset.any() else None,
        }
    return results


def evaluate(args: argparse.Namespace) -> dict:
    """Score, measure and write the report; returns the report's dictionary."""
    started = time.monotonic()
    check_out_dir(args.out, args.overwrite)
    examples = list_examples(args.data_dir, args.split)
    bundle = load_bundle(args.model)
    finder = finder_for(args.whole_image)
    scores = score_examples(
        bundle,
        examples,
        transform=launder,
        transform_labels=LAUNDER_LABELS[args.launder],
        batch_size=args.batch_size,
        progress=args.split,
        finder=finder,
    )
    if not scores.examples:
        raise LayoutError(f"none of the {len(examples)} images in {args.data_dir} ({args.split}) could be read")
    for path, reason in scores.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)

    meta = bundle.metadata
    threshold = meta.threshold
    labels, p_fake, sources = scores.labels, scores.p_fake, scores.sources
    in_subset = sources == SUBSET_140K
    if args.launder != "none":
        robustness, note = None, "the images were laundered (--launder)"
    elif args.no_sweep:
        robustness, note = None, "--no-sweep"
    else:
        robustness, note = robustness_sweep(bundle, examples, args.batch_size, finder), None
    report = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "path": str(args.model),
            "name": meta.name,
            "version": meta.version,
            "backbone": meta.backbone,
            "image_size": meta.image_size,
            "temperature": meta.temperature,
            "threshold": threshold,
            "target_fpr": meta.target_fpr,
        },
        "data": {
            "dir": str(args.data_dir),
            "split": args.split,
            "images": int(labels.size),
            "launder": args.launder,
            "launder_description": _launder_description(args.launder),
            "scoring": scoring_description(args.whole_image),
            "scored_on_faces": scores.scored_on_faces,
            "skipped": [{"path": str(path), "reason": reason} for path, reason in scores.skipped],
        },
        "overall": scores.summary(threshold),
        "subset_140k": scores.summary(threshold, in_subset),
        "other_sources": scores.summary(threshold, ~in_subset) if in_subset.any() else None,
        "per_source": scores.per_source(threshold),
        "reliability_bins": metrics.reliability_bins(labels, p_fake).to_json(),
        "robustness": robustness,
        "robustness_note": note,
    }
    report["seconds"] = round(time.monotonic() - started, 1)
    write_report(args.out, report, labels, p_fake, in_subset)
    return report


def write_report(out: Path, report: dict, labels: np.ndarray, p_fake: np.ndarray, in_subset: np.ndarray) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    curves = {"all": (labels, p_fake)}
    if in_subset.any():
        curves["140k sample"] = (labels[in_subset], p_fake[in_subset])
    plot_roc(out / "roc.png", curves)
    plot_reliability(out / "reliability.png", labels, p_fake)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = evaluate(args)
    except (ModelLoadError, LayoutError, ReportExistsError) as error:
        return fail(error)
    overall = report["overall"]
    print(
        f"{overall['images']} images: accuracy {overall['accuracy']:.4f}, "
        f"balanced accuracy {number(overall['balanced_accuracy'])}, ROC AUC {number(overall['roc_auc'])}, "
        f"ECE {overall['ece']:.4f}; report in {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
