"""Compare models side by side on the figures that matter, in one run.

    python -m training.compare MODEL [MODEL ...] --data DATA_DIR --split test --out DIR

Images are scored as the service scores them (``aiface.pipeline``, faces
found), or whole with ``--whole-image``. Each model scores the split four times: as it is, laundered (both classes),
only fakes laundered and only reals laundered (the shortcut audit; the
standard laundering of ``training.data.launder``); then the real images alone
blurred and downscaled-and-back (``REAL_PASSES``: how many smoothed real
photos are called fake); and, with ``--aligned DIR``, the aligned pairs of
``training.aligned`` as they are and laundered, per decoder. ``DIR/compare.json`` holds every
figure; ``DIR/compare.md`` is one table, a column per model, the fair pairs
first. A model is only ever judged at its own stored threshold.

Why a separate tool from ``training.evaluate``: shipping a model means
showing that it beats the one before on every fair figure in the same run on
the same images, and the audit needs the four passes side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from aiface.bundle import ModelLoadError
from training.cli import FAIR_SOURCES, fail

PASSES = {"none": (), "both": (0, 1), "fake": (1,), "real": (0,)}
REAL_PASSES = ("blur", "down_up")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="models (.keras with .json beside) to compare")
    parser.add_argument("--data", type=Path, required=True, help="folder in the 140k layout")
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"))
    parser.add_argument("--out", type=Path, required=True, help="folder for compare.json and compare.md")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier comparison in --out")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--aligned", action="append", default=[], type=Path, metavar="DIR",
                        help="a training.aligned folder whose pairs of the split are scored too, per decoder")
    parser.add_argument("--whole-image", action="store_true",
                        help="score whole images (their centred square), not the faces found in them")
    return parser.parse_args(argv)


def figures(scores: dict, threshold: float) -> dict:
    """The comparison's figures from the four passes' Scores."""
    result = {
        "all": scores["none"].summary(threshold),
        "laundered": scores["both"].summary(threshold),
        "per_source": scores["none"].per_source(threshold),
        "laundered_per_source": scores["both"].per_source(threshold),
    }
    none_accuracy = result["all"]["accuracy"]
    result["audit"] = {
        "fakes_laundered_points": 100 * (scores["fake"].summary(threshold)["accuracy"] - none_accuracy),
        "reals_laundered_points": 100 * (scores["real"].summary(threshold)["accuracy"] - none_accuracy),
    }
    reals = {src: b["false_positive_rate"] for src, b in result["per_source"].items() if b["real"]}
    result["real_source_fpr"] = reals
    result["worst_real_source_fpr"] = max(reals.values()) if reals else None
    return result


def decoder_of(source: str) -> str:
    """An aligned pair's decoder: its source is DECODER-ORIGINAL_SOURCE (``training.aligned``)."""
    return source.split("-", 1)[0]


def aligned_figures(scores: dict, threshold: float) -> dict:
    """Per decoder, the aligned pairs' ROC AUC and fakes caught, as they are and laundered."""
    result = {}
    for which, key in (("none", ""), ("both", "laundered_")):
        decoders = np.array([decoder_of(s) for s in scores[which].sources], dtype=object)
        for decoder in sorted(set(decoders)):
            block = scores[which].summary(threshold, decoders == decoder)
            result.setdefault(decoder, {}).update({
                f"{key}roc_auc": block["roc_auc"], f"{key}recall_fake": block["recall_fake"],
                f"{key}false_positive_rate": block["false_positive_rate"], "pairs": block["images"] // 2,
            })
    return result


def compare(args: argparse.Namespace) -> dict:
    if args.out.exists() and any(args.out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"{args.out} is not empty; pass --overwrite to replace its comparison")
    from aiface.bundle import load_bundle
    from training.data.launder import launder
    from training.data.layout import list_split
    from training.evaluate import SWEEP, finder_for, scoring_description
    from training.evaluation.scoring import score_examples

    examples = list_split(args.data, args.split)
    reals = [e for e in examples if e.label == 0]
    aligned = [e for folder in args.aligned for e in list_split(folder, args.split)]
    finder = finder_for(args.whole_image)
    results = {}
    for path in args.models:
        bundle = load_bundle(path)
        meta = bundle.metadata
        label = f"{meta.name} {meta.version}"
        if label in results:  # two models of one name and version: tell them apart by path
            label = f"{label} ({path})"
        scores = {
            which: score_examples(bundle, examples, transform=launder, transform_labels=labels,
                                  batch_size=args.batch_size, progress=f"{label} ({which} laundered)",
                                  finder=finder)
            for which, labels in PASSES.items()
        }
        results[label] = {
            "path": str(path), "backbone": meta.backbone, "image_size": meta.image_size,
            "threshold": meta.threshold, "images": len(scores["none"].examples), **figures(scores, meta.threshold),
        }
        smoothed = {}
        for which in REAL_PASSES:
            description, transform = SWEEP[which]
            passed = score_examples(bundle, reals, transform=transform, batch_size=args.batch_size,
                                    progress=f"{label} (reals, {which})", finder=finder)
            smoothed[which] = {
                "description": description,
                "false_positive_rate": passed.summary(meta.threshold)["false_positive_rate"],
                "per_source": {s: b["false_positive_rate"] for s, b in passed.per_source(meta.threshold).items()},
            }
        results[label]["smoothed_reals"] = smoothed
        if aligned:
            aligned_scores = {
                which: score_examples(bundle, aligned, transform=launder, transform_labels=PASSES[which],
                                      batch_size=args.batch_size, progress=f"{label} (aligned, {which} laundered)",
                                      finder=finder)
                for which in ("none", "both")
            }
            results[label]["aligned"] = aligned_figures(aligned_scores, meta.threshold)
    report = {"data": str(args.data), "split": args.split, "scoring": scoring_description(args.whole_image),
              "aligned": [str(a) for a in args.aligned],
              "models": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "compare.md").write_text(markdown(report))
    return report


def _fmt(value, percent: bool = False, signed: bool = False) -> str:
    if value is None:
        return "—"
    if signed:
        return f"{value:+.1f}"
    return f"{100 * value:.1f} %" if percent else f"{value:.3f}"


def rows(model: dict) -> list[tuple[str, str, str]]:
    """(figure, value, which way is better) for one model."""
    per, laundered = model["per_source"], model["laundered_per_source"]
    out = []
    for source in FAIR_SOURCES:
        if source in per:
            out += [
                (f"`{source}` ROC AUC", _fmt(per[source]["roc_auc"]), "higher"),
                (f"`{source}` accuracy", _fmt(per[source]["accuracy"]), "higher"),
                (f"`{source}` ceiling: best accuracy at any threshold", _fmt(per[source]["best_accuracy"]), "higher"),
                (f"`{source}` ceiling: fakes caught, ≤ 3 % of its reals called fake",
                 _fmt(per[source]["recall_fake_at_3pct_fpr"], percent=True), "higher"),
                (f"`{source}` laundered ROC AUC", _fmt(laundered[source]["roc_auc"]), "higher"),
            ]
    out += [
        ("laundered balanced accuracy (all)", _fmt(model["laundered"]["balanced_accuracy"]), "higher"),
        (
            "audit: only fakes laundered (accuracy points)",
            _fmt(model["audit"]["fakes_laundered_points"], signed=True),
            "nearer 0",
        ),
        (
            "audit: only reals laundered (accuracy points)",
            _fmt(model["audit"]["reals_laundered_points"], signed=True),
            "nearer 0",
        ),
        ("ECE (all)", _fmt(model["all"]["ece"]), "lower"),
        ("reals called fake (all)", _fmt(model["all"]["false_positive_rate"], percent=True), "lower"),
        ("reals called fake, worst real source", _fmt(model["worst_real_source_fpr"], percent=True), "lower"),
        ("accuracy (all)", _fmt(model["all"]["accuracy"]), "higher"),
        ("ROC AUC (all)", _fmt(model["all"]["roc_auc"]), "higher"),
    ]
    for source, fpr in model["real_source_fpr"].items():
        out.append((f"reals called fake: `{source}`", _fmt(fpr, percent=True), "lower"))
    for block in model.get("smoothed_reals", {}).values():
        out.append((f"reals called fake, {block['description']} (all)",
                    _fmt(block["false_positive_rate"], percent=True), "lower"))
        worst = max(block["per_source"].values(), default=None)
        out.append((f"reals called fake, {block['description']} (worst source)", _fmt(worst, percent=True), "lower"))
    for decoder, block in model.get("aligned", {}).items():
        out += [
            (f"aligned `{decoder}` ({block['pairs']} pairs): ROC AUC", _fmt(block["roc_auc"]), "higher"),
            (f"aligned `{decoder}`: reconstructions caught", _fmt(block["recall_fake"], percent=True), "higher"),
            (f"aligned `{decoder}`: originals called fake", _fmt(block["false_positive_rate"], percent=True), "lower"),
            (f"aligned `{decoder}` laundered: ROC AUC", _fmt(block["laundered_roc_auc"]), "higher"),
        ]
    for source, block in per.items():
        if block["fake"] and not block["real"]:
            out.append((f"fakes caught: `{source}`", _fmt(block["recall_fake"], percent=True), "higher"))
            out.append((f"fakes caught laundered: `{source}`",
                        _fmt(model["laundered_per_source"][source]["recall_fake"], percent=True), "higher"))
    return out


def markdown(report: dict) -> str:
    names = list(report["models"])
    tables = {name: rows(model) for name, model in report["models"].items()}
    lines = [
        f"# Side by side on `{report['data']}` {report['split']}",
        "",
        "Each model at its own stored threshold; laundered = downscaled to 128 px and re-saved as JPEG quality 40.",
        "Scored: " + ("each whole image (its centred square)." if report.get("scoring") == "whole_image"
                      else "the faces found, as the service scores them."),
        "The ceilings choose their threshold on these very images: what the ranking would allow, not a figure "
        "to promise.",
        "",
        "| figure | " + " | ".join(names) + " | better |",
        "|---|" + "---|" * len(names) + "---|",
    ]
    first = tables[names[0]]
    for index, (figure, _, better) in enumerate(first):
        values = [tables[name][index][1] if index < len(tables[name]) else "—" for name in names]
        lines.append(f"| {figure} | " + " | ".join(values) + f" | {better} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = compare(args)
    except (FileExistsError, ModelLoadError, OSError, ValueError) as error:
        return fail(error)
    print((args.out / "compare.md").read_text())
    return 0 if report["models"] else 2


if __name__ == "__main__":
    sys.exit(main())
