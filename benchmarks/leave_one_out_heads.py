"""Which fakes an added head catches when their generator was never seen: leave-one-source-out fits.

    python benchmarks/leave_one_out_heads.py MODEL DATA_DIR --cache DIR [training.add_head's options] \
        --leave-out dhiandika_sd15_faces --leave-out gebaltso_sdfd_sd21 --leave-out flux1_politicians \
        [--without-head decoder] [--json OUT.json]

For the fit with every ``--fake-source`` and for each ``--leave-out`` source, ``training.add_head``'s own
``fit_head`` (the same features, weighting, choice of C and joining; the source dropped with
``--exclude-source``) joins a new head to MODEL's; ``--without-head NAME`` joins it to MODEL's other heads
only (e.g. without aiface 3.0.0's TAEF2 decoder head). Each variant is then judged on ``test`` (faces found,
as stored) at the threshold ``training.models.calibration`` would pick on ``valid``'s real faces (``--target-fpr``,
``--max-source-fpr``; a temperature does not move which faces pass it): every named fake source caught, the
left-out one marked, and real faces called fake, overall and per source. Features come from ``--cache``
(``training.add_head`` fills it; the test split's are added), so each variant costs a fit, not a pass of the
network. One difference from the shipped path: a face crop's features are its image's largest face's, where
the service takes the highest score over every face (the data's images hold one face each, nearly always).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.add_head import added_head_record, fit_head, margins_of, parse_args  # noqa: E402


def options(argv: list[str]) -> tuple[argparse.Namespace, argparse.Namespace]:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--leave-out", action="append", default=[], metavar="SOURCE")
    own.add_argument("--without-head", metavar="NAME")
    own.add_argument("--json", type=Path)
    mine, rest = own.parse_known_args(argv)
    # add_head's parser checks the rest; --out and --head only name a bundle this never writes.
    return mine, parse_args([*rest, "--out", "unused.keras", "--head", "left_out"])


def judge(joined, x, examples, args) -> dict:
    from training.models.calibration import pick_source_threshold, sigmoid

    def logits(rows):
        return (rows @ joined.heads + joined.offsets).max(axis=1) + joined.zero

    reals = joined.valid_reals
    threshold = pick_source_threshold(sigmoid(logits(reals)), np.zeros(len(reals), int),
                                      np.asarray(joined.valid_real_sources, dtype=object), args.target_fpr,
                                      args.max_source_fpr)
    called = sigmoid(logits(x)) >= threshold
    labels = np.array([e.label for e in examples])
    sources = np.array([e.source for e in examples], dtype=object)
    caught = {s: float(called[(sources == s) & (labels == 1)].mean()) for s in sorted(set(sources[labels == 1]))}
    accused = {s: float(called[(sources == s) & (labels == 0)].mean()) for s in sorted(set(sources[labels == 0]))}
    return {"caught": caught, "reals_called_fake": float(called[labels == 0].mean()), "per_real_source": accused}


def main(argv: list[str] | None = None) -> int:
    from aiface.bundle import load_bundle
    from training.data.layout import list_split
    from training.evaluate import finder_for
    from training.models.features import extract

    mine, args = options(sys.argv[1:] if argv is None else argv)
    bundle = load_bundle(args.model)
    finder = finder_for(args.whole_image)
    margins = margins_of(bundle.model)
    if mine.without_head:
        names = (added_head_record(bundle.metadata.training) or {}).get("heads", ["generator"])
        if mine.without_head not in names or len(names) < 2:
            raise SystemExit(f"error: MODEL's heads are {', '.join(names)}; cannot drop {mine.without_head}")
        keep = [index for index, name in enumerate(names) if name != mine.without_head]
        margins = (margins[0][:, keep], margins[1][keep])
    test = list_split(args.data_dir, "test")
    x_test, test_kept = extract(bundle, args.model, test, "clean", args.cache, progress="test (clean)", finder=finder)

    results = {}
    for left_out in [None, *mine.leave_out]:
        variant = argparse.Namespace(**vars(args))
        variant.exclude_source = [*args.exclude_source, *([left_out] if left_out else [])]
        joined = fit_head(variant, bundle, finder, margins)
        results[left_out or "none"] = judge(joined, x_test, test_kept, args)
        results[left_out or "none"]["c"] = joined.head.c
    report = {"model": str(args.model), "without_head": mine.without_head, "fake_sources": args.fake_source,
              "views": args.view, "variants": results}
    if mine.json:
        mine.json.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    return 0


def markdown(report: dict) -> str:
    variants = report["variants"]
    fakes = sorted(next(iter(variants.values()))["caught"])
    lines = ["| left out | C | " + " | ".join(fakes) + " | reals called fake | worst real source |",
             "|---|---|" + "---|" * (len(fakes) + 2)]
    for name, result in variants.items():
        cells = [f"**{100 * result['caught'][s]:.1f} %**" if s == name else f"{100 * result['caught'][s]:.1f} %"
                 for s in fakes]
        worst = max(result["per_real_source"].items(), key=lambda item: item[1])
        lines.append(f"| {name} | {result['c']:g} | " + " | ".join(cells)
                     + f" | {100 * result['reals_called_fake']:.2f} % | {worst[0]} {100 * worst[1]:.1f} % |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
