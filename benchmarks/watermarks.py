"""The open generators' invisible watermarks (aiface/watermark.py): false matches on real photos, and what survives.

``false-matches``: reads every real photo of a data set in the 140k layout
(``--data-dir``, ``real_vs_fake/real-vs-fake/*/real``) as the service reads an
upload, and prints, per mark, the best agreement any of them reached and how
many reach ``MIN_AGREEMENT`` (the level must stay above the best; photos under
``MIN_PIXELS`` are not read and are counted apart). ``--fakes`` does the same
for the fake class, for information.

``survival``: marks a few pictures with each generator's mark, as its reference
code does (the ``invisible-watermark`` package, tests/helpers.py), then
changes them as the web does (resizing, JPEG, crops) and prints, per change,
how many of them are still found, with the mean agreement. The pictures are
the first ``--count`` real photos of ``--data-dir`` enlarged to ``--side``
pixels (a generator's size), or synthetic ones without ``--data-dir``.
Nothing is written to disk.

    .venv/bin/python benchmarks/watermarks.py false-matches --data-dir ../shared/data
    .venv/bin/python benchmarks/watermarks.py survival --data-dir ../shared/data --count 4
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's aiface, before any installed copy
sys.path.insert(0, str(REPO / "tests"))

from aiface.preprocess import load_image  # noqa: E402
from aiface.watermark import MARKS, MIN_AGREEMENT, MIN_PIXELS, agreements, find_mark  # noqa: E402
from helpers import GENERATOR_PIPELINES, embed_watermark, photo_like  # noqa: E402

BITS = {mark["name"]: mark["bits"] for mark in MARKS}


def false_matches(data_dir: Path, label: str) -> None:
    files = sorted(data_dir.glob(f"real_vs_fake/real-vs-fake/*/{label}/*"))
    best = {mark["name"]: 0 for mark in MARKS}
    matched = {mark["name"]: 0 for mark in MARKS}
    read = small = 0
    for path in files:
        pixels = load_image(path.read_bytes()).pixels
        if pixels.shape[0] * pixels.shape[1] < MIN_PIXELS:
            small += 1
            continue
        read += 1
        for name, matching in agreements(pixels).items():
            best[name] = max(best[name], matching)
        found = find_mark(pixels)
        if found:
            matched[found["name"]] += 1
    print(f"{label}: {read} read, {small} under {MIN_PIXELS} pixels (not read); level {MIN_AGREEMENT:.0%}")
    print("| mark | bits | best agreement | at or above the level |")
    print("|---|---|---|---|")
    for mark in MARKS:
        bits = len(mark["bits"])
        print(f"| {mark['name']} | {bits} | {best[mark['name']]}/{bits} ({best[mark['name']] / bits:.1%}) "
              f"| {matched[mark['name']]} |")


def jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return load_image(buffer.getvalue()).pixels


def resized(pixels: np.ndarray, factor: float) -> np.ndarray:
    height, width = pixels.shape[:2]
    size = (round(width * factor), round(height * factor))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.LANCZOS))


def cropped(pixels: np.ndarray, left: int, top: int, keep: float = 1.0) -> np.ndarray:
    height, width = pixels.shape[:2]
    return pixels[top:top + round((height - top) * keep), left:left + round((width - left) * keep)]


CHANGES = {
    "none (PNG)": lambda p: p,
    "JPEG q95": lambda p: jpeg(p, 95),
    "JPEG q75": lambda p: jpeg(p, 75),
    "JPEG q50": lambda p: jpeg(p, 50),
    "resized 0.75x": lambda p: resized(p, 0.75),
    "resized 0.5x": lambda p: resized(p, 0.5),
    "crop 8 px off the top and left": lambda p: cropped(p, 8, 8),
    "crop 3 px off the top and left": lambda p: cropped(p, 3, 3),
    "crop to the central 80 %": lambda p: cropped(p, round(0.1 * p.shape[1]), round(0.1 * p.shape[0]), 0.8 / 0.9),
    "crop 10 % off the right and bottom": lambda p: cropped(p, 0, 0, 0.9),
}


def pictures(data_dir: Path | None, count: int, side: int) -> list[np.ndarray]:
    if data_dir is None:
        return [photo_like(seed, side, side) for seed in range(count)]
    files = sorted(data_dir.glob("real_vs_fake/real-vs-fake/test/real/*"))[::97][:count]
    return [np.asarray(Image.fromarray(load_image(path.read_bytes()).pixels).resize((side, side), Image.LANCZOS))
            for path in files]


def survival(data_dir: Path | None, count: int, side: int) -> None:
    covers = pictures(data_dir, count, side)
    print(f"{len(covers)} pictures of {side}x{side} px, level {MIN_AGREEMENT:.0%}; found / marked "
          "(mean agreement)")
    print("| change | " + " | ".join(column for column, *_ in GENERATOR_PIPELINES) + " |")
    print("|---|" + "---|" * len(GENERATOR_PIPELINES))
    marked = {column: [embed_watermark(cover, BITS[name], float_pixels, swapped) for cover in covers]
              for column, name, float_pixels, swapped in GENERATOR_PIPELINES}
    for change, apply in CHANGES.items():
        cells = []
        for column, name, *_ in GENERATOR_PIPELINES:
            changed = [apply(pixels) for pixels in marked[column]]
            found = sum((find_mark(pixels) or {}).get("name") == name for pixels in changed)
            mean = np.mean([agreements(pixels)[name] / len(BITS[name]) for pixels in changed])
            cells.append(f"{found}/{len(changed)} ({mean:.0%})")
        print(f"| {change} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["false-matches", "survival"])
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--fakes", action="store_true", help="false-matches: the fake class too")
    parser.add_argument("--count", type=int, default=4, help="survival: pictures per mark")
    parser.add_argument("--side", type=int, default=1024, help="survival: their size in pixels")
    args = parser.parse_args()
    if args.what == "false-matches":
        if args.data_dir is None:
            parser.error("false-matches needs --data-dir")
        false_matches(args.data_dir, "real")
        if args.fakes:
            false_matches(args.data_dir, "fake")
    else:
        survival(args.data_dir, args.count, args.side)


if __name__ == "__main__":
    main()
