"""Reported wrong verdicts, exported by the browser extension, as a regression set.

The extension's options page exports a zip (unpack it into a folder)::

    reports.jsonl          one JSON object per line: file, label, sha256, kept, verdict, model, ...
    real/<sha256>.<ext>    images the user said are real photos
    fake/<sha256>.<ext>    images the user said are AI-generated

``python -m training.evaluate MODEL FOLDER --out DIR`` scores such a folder
(``list_examples``; the split is ignored): each image under the user's
label, its source ``reported:<the verdict the extension gave>``, so that the
report's per-source rows say how the model does on the images called "likely
AI" (mostly reals called fake) apart from those it let through.

    python -m training.reports gate DIR --min-accuracy 0.8

reads that evaluation's ``report.json`` and exits 1 when the model gets
fewer than that share of the reported images right: a gate for a new model
(docs/training.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path, PurePosixPath

from aiface.bundle import CLASS_NAMES
from training.cli import fail, probability
from training.data.layout import Example, LayoutError, list_split

REPORTS_FILE = "reports.jsonl"


def is_reports_export(folder: str | Path) -> bool:
    return (Path(folder) / REPORTS_FILE).is_file()


def _example(folder: Path, number: int, line: str) -> Example:
    where = f"{folder / REPORTS_FILE}, line {number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise LayoutError(f"{where} is not JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise LayoutError(f"{where} is not a JSON object")
    label, name = record.get("label"), record.get("file")
    if label not in CLASS_NAMES:
        raise LayoutError(f"{where}: label must be one of {', '.join(CLASS_NAMES)}, not {label!r}")
    relative = PurePosixPath(name) if isinstance(name, str) else None
    if relative is None or len(relative.parts) != 2 or relative.parts[0] != label or relative.is_absolute() \
            or ".." in relative.parts:
        raise LayoutError(f"{where}: file must be {label}/NAME (the folder of its label), not {name!r}")
    path = folder / relative
    if not path.is_file():
        raise LayoutError(f"{where}: {relative} is missing")
    sha256 = record.get("sha256")
    if record.get("kept") == "image" and hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
        raise LayoutError(f"{where}: {relative} is not the image reported (its SHA-256 differs)")
    verdict = record.get("verdict") if isinstance(record.get("verdict"), dict) else {}
    return Example(path, CLASS_NAMES.index(label), f"reported:{verdict.get('verdict') or 'unknown'}")


def list_reports(folder: str | Path) -> list[Example]:
    """Every reported image of an export, in the order of reports.jsonl, with the user's label."""
    folder = Path(folder)
    lines = (folder / REPORTS_FILE).read_text(encoding="utf-8").splitlines()
    examples = [_example(folder, number, line) for number, line in enumerate(lines, 1) if line.strip()]
    if not examples:
        raise LayoutError(f"{folder / REPORTS_FILE} lists no reports")
    return examples


def list_examples(data_dir: str | Path, split: str) -> list[Example]:
    """A reports export (the split ignored), or the split of a folder in the 140k layout."""
    return list_reports(data_dir) if is_reports_export(data_dir) else list_split(data_dir, split)


def gate(report_dir: Path, min_accuracy: float) -> tuple[bool, str]:
    """Whether the evaluation in report_dir gets at least min_accuracy of the reported images right, and why."""
    path = report_dir / "report.json"
    try:
        report = json.loads(path.read_text())
        overall = report["overall"]
        accuracy, images = float(overall["accuracy"]), int(overall["images"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise LayoutError(f"{path} is not a training.evaluate report ({error})") from None
    right = round(accuracy * images)
    passed = accuracy >= min_accuracy
    return passed, (f"{report['model'].get('name')} {report['model'].get('version')}: {right} of {images} reported "
                    f"images right ({accuracy:.1%}), at least {min_accuracy:.1%} needed: "
                    f"{'passed' if passed else 'FAILED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.reports",
                                     description="Gate a model on its evaluation over reported verdicts.")
    commands = parser.add_subparsers(dest="command", required=True)
    gate_parser = commands.add_parser("gate", help="exit 1 unless the model gets enough reported images right")
    gate_parser.add_argument("report_dir", type=Path, help="the --out folder of training.evaluate on a reports export")
    gate_parser.add_argument("--min-accuracy", type=probability, required=True,
                             help="the share of reported images the model must get right")
    args = parser.parse_args(argv)
    try:
        passed, message = gate(args.report_dir, args.min_accuracy)
    except LayoutError as error:
        return fail(error)
    print(message)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
