"""Finding labelled images in a folder in the Kaggle "140k Real and Fake Faces" layout.

``DATA_DIR/{train,valid,test}/{real,fake}/*``; the Kaggle download's own root
(``DATA_DIR/real_vs_fake/real-vs-fake/...``) is found too. Each image's
source comes from a ``sources.csv`` beside the data when there is one (its
``file`` column is relative to the folder holding it), else from the file
name: the part before the last underscore (``zoya_140k_subset_1a2b.jpg``),
or ``unknown``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from aiface.bundle import CLASS_NAMES

SPLITS = ("train", "valid", "test")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
KAGGLE_ROOT = Path("real_vs_fake") / "real-vs-fake"


class LayoutError(ValueError):
    """A data folder that is missing, empty or not in the expected layout."""


@dataclass(frozen=True)
class Example:
    path: Path
    label: int  # index into CLASS_NAMES: 0 real, 1 fake
    source: str


def find_root(data_dir: str | Path) -> Path:
    """The folder that holds the split folders."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise LayoutError(f"data folder {data_dir} does not exist")
    for candidate in (data_dir, data_dir / KAGGLE_ROOT, data_dir / "real-vs-fake"):
        if any((candidate / split).is_dir() for split in SPLITS):
            return candidate
    raise LayoutError(
        f"{data_dir} is not in the 140k layout: expected {{train,valid,test}}/{{real,fake}}/ "
        f"under it or under {KAGGLE_ROOT}"
    )


def sources_table(folder: Path) -> Path | None:
    """The nearest ``sources.csv`` in ``folder`` or a folder above it."""
    for candidate in (folder, *folder.parents):
        table = candidate / "sources.csv"
        if table.is_file():
            return table
    return None


def _sources_by_path(data_dir: Path) -> dict[Path, str]:
    table = sources_table(data_dir)
    if table is None:
        return {}
    with table.open(newline="") as handle:
        return {
            (table.parent / row["file"]).resolve(): row["source"]
            for row in csv.DictReader(handle)
            if row.get("file") and row.get("source")
        }


def source_from_name(path: Path) -> str:
    stem = path.stem
    return stem.rsplit("_", 1)[0] if "_" in stem else "unknown"


def list_split(data_dir: str | Path, split: str) -> list[Example]:
    """Every image of one split, sorted by path, with its label and source."""
    if split not in SPLITS:
        raise LayoutError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    data_dir = Path(data_dir)
    root = find_root(data_dir)
    split_dir = root / split
    missing = [name for name in CLASS_NAMES if not (split_dir / name).is_dir()]
    if missing:
        raise LayoutError(f"{split_dir} lacks the class folder(s): {', '.join(missing)}")
    sources = _sources_by_path(data_dir.resolve())
    examples = []
    for label, name in enumerate(CLASS_NAMES):
        for path in sorted((split_dir / name).iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                source = sources.get(path.resolve()) or source_from_name(path)
                examples.append(Example(path, label, source))
    if not examples:
        raise LayoutError(f"{split_dir} holds no images in real/ or fake/")
    counts = [sum(e.label == label for e in examples) for label in range(len(CLASS_NAMES))]
    if 0 in counts:
        empty = CLASS_NAMES[counts.index(0)]
        raise LayoutError(f"{split_dir / empty} holds no images; both classes are needed")
    return examples
