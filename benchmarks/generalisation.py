"""Heads and unseen generators, on a frozen ImageNet base (cheap enough for 2 CPU cores).

    python benchmarks/generalisation.py ../shared/data --out runs/generalisation [--epochs 2 --steps 60]
        [--backbone efficientnet_lite2] [--runs second_order average ...]

Trains a base (EfficientNet-Lite0 by default) with its base frozen (only the
head learns, the recipe of ``training.train`` otherwise: native crops,
source-weighted batches, degradations at 30 %) five times: the second-order
and the average-pooled head on all sources, and the second-order head with
each of three fake sources left out of train and valid (``--exclude-source``);
``--runs`` picks some of them. Runs go to ``OUT/BACKBONE/RUN``. Each
run is calibrated on its valid split and scored on test
(``training.evaluate --no-sweep``). Prints one table: the fair pairs' valid
ROC AUC that selected the epoch, the test ROC AUC of both fair pairs, and the
share of each left-out source's fakes caught, seen and unseen.

A frozen base is a lower bound on what fine-tuning reaches; the comparison
between runs, not the level, is the point.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

LEFT_OUT = ("basemax_fakefaces", "gebaltso_sdfd_sd21", "roeishc_ffhq_sg2")
FAIR = ("zoya_140k_subset", "roeishc_ffhq_sg2")


def runs() -> dict[str, list[str]]:
    plan = {"second_order": ["--head", "second_order"], "average": ["--head", "average"]}
    for source in LEFT_OUT:
        plan[f"second_order_without_{source}"] = ["--head", "second_order", "--exclude-source", source]
    return plan


def run(name: str, extra: list[str], args: argparse.Namespace) -> dict:
    out = args.out / args.backbone / name
    report = out / "report" / "report.json"
    if not report.is_file():
        train = [sys.executable, "-m", "training.train", str(args.data), "--out", str(out / "run"), "--overwrite",
                 "--epochs", str(args.epochs), "--head-epochs", str(args.epochs), "--steps-per-epoch",
                 str(args.steps), "--seed", "1", "--name", name, "--backbone", args.backbone, *extra]
        subprocess.run(train, check=True)
        evaluate = [sys.executable, "-m", "training.evaluate", str(out / "run" / "model.keras"), str(args.data),
                    "--split", "test", "--no-sweep", "--out", str(out / "report"), "--overwrite"]
        subprocess.run(evaluate, check=True)
    state = json.loads((out / "run" / "state.json").read_text())
    return {"best": state["best"], "report": json.loads(report.read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="one folder per run; finished runs are reused")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60, help="batches of 32 an epoch")
    parser.add_argument(
        "--backbone", default="efficientnet_lite0", choices=("efficientnet_lite0", "efficientnet_lite2")
    )
    parser.add_argument("--runs", nargs="+", choices=list(runs()), help="only these runs (default: all)")
    args = parser.parse_args()
    results = {name: run(name, extra, args) for name, extra in runs().items() if not args.runs or name in args.runs}

    def auc(result, source):
        block = result["report"]["per_source"].get(source)
        return f"{block['roc_auc']:.3f}" if block and block["roc_auc"] is not None else "—"

    def caught(result, source):
        block = result["report"]["per_source"].get(source)
        return f"{100 * block['recall_fake']:.1f} %" if block and block["recall_fake"] is not None else "—"

    print(f"frozen {args.backbone} base, {args.epochs} epochs of {args.steps} batches of 32")
    left_out = " | ".join(f"caught: {s}" for s in LEFT_OUT)
    print(f"| run | fair valid AUC | 140k test AUC | roeishc test AUC | {left_out} |")
    print("|---|---|---|---|" + "---|" * len(LEFT_OUT))
    for name, result in results.items():
        cells = [caught(result, source) + (" (unseen)" if name.endswith(source) else "") for source in LEFT_OUT]
        print(f"| {name} | {result['best']['fair_auc']:.3f} | {auc(result, FAIR[0])} | {auc(result, FAIR[1])} | "
              + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
