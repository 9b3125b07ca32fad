"""Rendering an evaluation report: ``report.md``, ``roc.png`` and ``reliability.png``.

Takes the JSON-ready dictionary that ``training.evaluate`` builds (and
writes as ``report.json``) plus the raw scores for the plots. Figures are
drawn with matplotlib's object API, so no display or pyplot state is
involved.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.evaluation import metrics

SUBSET_140K = "zoya_140k_subset"

_COLUMNS = (
    ("accuracy", "accuracy"),
    ("balanced_accuracy", "balanced acc."),
    ("roc_auc", "ROC AUC"),
    ("average_precision", "avg. precision"),
    ("log_loss", "log loss"),
    ("ece", "ECE"),
    ("false_positive_rate", "reals called fake"),
    ("recall_fake", "fakes caught"),
)
_SWEEP_COLUMNS = (
    ("accuracy", "accuracy"),
    ("balanced_accuracy", "balanced acc."),
    ("roc_auc", "ROC AUC"),
    ("false_positive_rate", "reals called fake"),
    ("recall_fake", "fakes caught"),
)


def number(value) -> str:
    return "—" if value is None else f"{value:.4f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _metric_row(name: str, block: dict) -> list[str]:
    return [name, str(block["images"]), str(block["real"]), str(block["fake"])] + [
        number(block[key]) for key in (key for key, _ in _COLUMNS)
    ]


def markdown(report: dict) -> str:
    model, data = report["model"], report["data"]
    header = ["images", "real", "fake"] + [title for _, title in _COLUMNS]
    lines = [
        f"# Evaluation of {model['name']} {model['version']} ({model['backbone']}, {model['image_size']} px)",
        "",
        f"- model: `{model['path']}`; temperature {model['temperature']:.4g}; decision threshold "
        f"{model['threshold']:.4g}"
        + (
            f" (chosen for {model['target_fpr']:.1%} reals called fake on valid)"
            if model["target_fpr"] is not None
            else ""
        ),
        f"- data: `{data['dir']}`, split `{data['split']}`: {data['images']} images scored, "
        f"{len(data['skipped'])} unreadable skipped",
        f"- laundering: {data['launder_description']}",
        "- scored: "
        + (f"the faces found, as the service scores them ({data['scored_on_faces']} of the images on a face, "
           "the others whole)" if data.get("scoring") == "faces" else "each whole image (its centred square)"),
        "",
        "Images are called fake iff P(fake) >= the threshold. ECE: 15 equal-width bins of P(fake).",
        "",
        "## Headline",
        "",
    ]
    rows = [_metric_row("all", report["overall"])]
    if report["subset_140k"] is not None:
        rows.append(_metric_row(f"140k sample (`{SUBSET_140K}`)", report["subset_140k"]))
    if report["other_sources"] is not None:
        rows.append(_metric_row("all other sources", report["other_sources"]))
    lines += _table(["", *header], rows)
    confusion = report["overall"]["confusion"]
    lines += ["", f"Confusion matrix at threshold {model['threshold']:.4g}:", ""]
    lines += _table(
        ["", "called real", "called fake"],
        [
            ["real", str(confusion["real_called_real"]), str(confusion["real_called_fake"])],
            ["fake", str(confusion["fake_called_real"]), str(confusion["fake_called_fake"])],
        ],
    )
    lines += ["", "## Ceilings", ""]
    lines.append("With thresholds chosen on these very images: how far the ranking would let the accuracy and the "
                 "fakes caught go. Far above the figures at the stored threshold, the threshold is what holds the "
                 "model back; close to them, its ranking is.")
    lines.append("")
    ceiling_blocks = [("all", report["overall"])]
    if report["subset_140k"] is not None:
        ceiling_blocks.append((f"140k sample (`{SUBSET_140K}`)", report["subset_140k"]))
    ceiling_blocks += [(f"`{name}`", block) for name, block in report["per_source"].items()
                       if block["real"] and block["fake"] and name != SUBSET_140K]
    lines += _table(
        ["", "accuracy", "best accuracy", "fakes caught", "at ≤ 1 % reals called fake", "at ≤ 3 %"],
        [[name, number(block["accuracy"]), number(block["best_accuracy"]), number(block["recall_fake"]),
          number(block["recall_fake_at_1pct_fpr"]), number(block["recall_fake_at_3pct_fpr"])]
         for name, block in ceiling_blocks],
    )
    lines += ["", "## Per source", ""]
    per_source = [_metric_row(f"`{name}`", block) for name, block in report["per_source"].items()]
    lines += _table(["source", *header], per_source)
    lines += ["", "## Robustness", ""]
    if report["robustness"] is None:
        lines.append(f"Not run: {report['robustness_note']}.")
    else:
        lines.append("Both classes transformed before preprocessing; metrics at the stored threshold.")
        lines.append("")
        sweep_header = ["transform"] + [title for _, title in _SWEEP_COLUMNS]
        with_subset = any(entry["subset_140k_roc_auc"] is not None for entry in report["robustness"].values())
        if with_subset:
            sweep_header.append("140k sample AUC")
        sweep_rows = []
        for entry in report["robustness"].values():
            row = [entry["description"]] + [number(entry[key]) for key, _ in _SWEEP_COLUMNS]
            if with_subset:
                row.append(number(entry["subset_140k_roc_auc"]))
            sweep_rows.append(row)
        lines += _table(sweep_header, sweep_rows)
    if data["skipped"]:
        lines += ["", "## Unreadable files skipped", ""]
        lines += [f"- `{item['path']}`: {item['reason']}" for item in data["skipped"]]
    lines += ["", "![ROC curve](roc.png)", "", "![Reliability diagram](reliability.png)", ""]
    return "\n".join(lines)


def plot_roc(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """One ROC curve per named (labels, p_fake) pair that holds both classes."""
    from matplotlib.figure import Figure  # on first use: half a second that --help need not wait for

    figure = Figure(figsize=(5, 5), dpi=120)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1)
    for name, (labels, p_fake) in curves.items():
        auc = metrics.roc_auc(labels, p_fake)
        if auc is None:
            continue
        curve = metrics.roc_curve(labels, p_fake)
        axes.plot(curve.false_positive_rate, curve.true_positive_rate, label=f"{name} (AUC {auc:.4f})")
    axes.set(
        xlabel="reals called fake (false-positive rate)",
        ylabel="fakes caught (true-positive rate)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="ROC",
    )
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path)


def plot_reliability(path: Path, labels: np.ndarray, p_fake: np.ndarray) -> None:
    """Observed fraction of fakes against mean P(fake), per bin, with the images per bin below."""
    table = metrics.reliability_bins(labels, p_fake)
    ece = metrics.expected_calibration_error(labels, p_fake)
    centers = (table.edges[:-1] + table.edges[1:]) / 2
    width = table.edges[1] - table.edges[0]
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 6), dpi=120)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
    top.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1, label="perfect calibration")
    filled = table.counts > 0
    top.bar(centers[filled], table.fraction_fake[filled], width=width * 0.9, alpha=0.4, label="fraction fake")
    top.plot(table.mean_p_fake[filled], table.fraction_fake[filled], marker="o", label="mean P(fake) vs fraction fake")
    top.set(ylabel="fraction of images that are fake", ylim=(0, 1), title=f"Reliability (ECE {ece:.4f}, 15 bins)")
    top.legend(loc="upper left", fontsize="small")
    bottom.bar(centers, table.counts, width=width * 0.9, color="0.4")
    bottom.set(xlabel="predicted P(fake)", ylabel="images", xlim=(0, 1))
    if table.counts.max() > 0:
        bottom.set_yscale("log")
    figure.tight_layout()
    figure.savefig(path)
