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

``cost``: the time to read a file of each size (PNG of a synthetic picture:
decoding included, as the service reads an upload; median of ``--repeat``), the
peak memory Python allocates for it (tracemalloc: numpy's arrays included),
and the time of the extension's decoder (extension/src/watermark.js, under
node) on the same pixels.

    .venv/bin/python benchmarks/watermarks.py false-matches --data-dir ../shared/data
    .venv/bin/python benchmarks/watermarks.py survival --data-dir ../shared/data --count 4
    .venv/bin/python benchmarks/watermarks.py cost
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's aiface, before any installed copy
sys.path.insert(0, str(REPO / "tests"))

from aiface.preprocess import load_image  # noqa: E402
from aiface.watermark import MARKS, MIN_AGREEMENT, MIN_PIXELS, agreements, find_mark, read_watermark  # noqa: E402
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
    "crop 10 % off the bottom": lambda p: p[:round(0.9 * p.shape[0])],
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


SIZES = [(512, 512), (1024, 1024), (1536, 1536), (2500, 2000)]
# Times findMark on {width, height} pictures of raw RGB read from stdin, one after the other.
NODE_TIMER = """
import { findMark } from %r;
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const data = Buffer.concat(chunks);
const { sizes, repeat } = JSON.parse(process.argv[1]);
let at = 0;
const out = [];
for (const [width, height] of sizes) {
  const rgb = new Uint8Array(data.buffer, data.byteOffset + at, width * height * 3);
  at += width * height * 3;
  const times = [];
  for (let k = 0; k < repeat; k += 1) {
    const started = performance.now();
    findMark(rgb, width, height);
    times.push(performance.now() - started);
  }
  out.push(times.sort((a, b) => a - b)[Math.floor(repeat / 2)]);
}
process.stdout.write(JSON.stringify(out));
"""


def cost(repeat: int) -> None:
    pictures = [photo_like(seed, width, height) for seed, (width, height) in enumerate(SIZES)]
    node = shutil.which("node")
    js = [None] * len(SIZES)
    if node:
        script = NODE_TIMER % (REPO / "extension" / "src" / "watermark.js").as_uri()
        arguments = json.dumps({"sizes": SIZES, "repeat": repeat})
        result = subprocess.run([node, "--input-type=module", "-e", script, arguments], capture_output=True,
                                input=b"".join(picture.tobytes() for picture in pictures), check=True)
        js = json.loads(result.stdout)
    print("| size | Python, file to answer (ms) | Python peak memory (MB) | extension decoder (ms) |")
    print("|---|---|---|---|")
    for (width, height), picture, js_ms in zip(SIZES, pictures, js, strict=True):
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, "PNG", compress_level=1)
        data = buffer.getvalue()
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            read_watermark(data)
            times.append((time.perf_counter() - started) * 1000)
        tracemalloc.start()
        read_watermark(data)
        peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        shown = f"{js_ms:.0f}" if js_ms is not None else "(no node)"
        print(f"| {width}x{height} ({width * height / 1e6:.1f} MP) | {statistics.median(times):.0f} | {peak:.0f} "
              f"| {shown} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["false-matches", "survival", "cost"])
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--fakes", action="store_true", help="false-matches: the fake class too")
    parser.add_argument("--count", type=int, default=4, help="survival: pictures per mark")
    parser.add_argument("--side", type=int, default=1024, help="survival: their size in pixels")
    parser.add_argument("--repeat", type=int, default=3, help="cost: runs per size (the median is shown)")
    args = parser.parse_args()
    if args.what == "false-matches":
        if args.data_dir is None:
            parser.error("false-matches needs --data-dir")
        false_matches(args.data_dir, "real")
        if args.fakes:
            false_matches(args.data_dir, "fake")
    elif args.what == "survival":
        survival(args.data_dir, args.count, args.side)
    else:
        cost(args.repeat)


if __name__ == "__main__":
    main()
