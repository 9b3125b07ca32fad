"""The extension's faces against the service's, on the same image bytes.

Both runtimes run one face finder (``aiface/faces.py`` in the service,
``extension/src/faces.js`` on the converted network in the browser). This
measures how well they agree, how often they find a face, and what it costs:

- scenes: ``--per-class`` real and fake ``test`` images of a labelled folder,
  each pasted at ``--face-side`` px into a ``--frame`` px scene (the
  backgrounds of ``face_crop_gain.py``), saved as PNG;
- originals: ``--originals`` ``test`` images as they are (their JPEG bytes;
  0: none, -1: all of the split).

Each image goes through ``aiface.faces.default_finder()`` here and through the
built extension in headless Chromium (``extension/test/drive.mjs``, local
only, so the bundled classifier scores it too). Prints, for each set: faces
found by each, images where both found the same number, the IoU of each
browser face box with the service's (matched by order, largest first) and of
the crops they give, and the median time per image of face finding in each
runtime (here: ``FaceFinder.find`` alone; in the browser: the offscreen
document's ``faces_ms``, the detector input's resize included).

    .venv/bin/python benchmarks/face_boxes_js.py ../shared/data --per-class 20 --originals -1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from face_crop_gain import backgrounds, sample, scene
from PIL import Image

from aiface.faces import Box, crop_box, default_finder, iou
from aiface.preprocess import load_image
from training.data.layout import list_split

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = ROOT / "extension"


def browser_faces(site: Path, names: list[str]) -> list[dict]:
    """The extension's verdict for each image: its faces' boxes and its face-finding time."""
    subprocess.run(["npm", "run", "build", "--silent"], cwd=EXTENSION, check=True)
    # A private copy: other runs may rebuild extension/dist while this one reads it.
    extension = site / "extension"
    shutil.copytree(EXTENSION / "dist" / "chrome", extension)
    request = {"extensionDir": str(extension), "chromium": shutil.which("chromium") or "/usr/bin/chromium",
               "siteDir": str(site)}
    local = {"localOnly": True, "serverUrl": "", "maxLocalMegapixels": 16}
    results = []
    # drive.mjs takes its request as one argument: long lists go in pieces.
    for start in range(0, len(names), 100):
        piece = {**request, "checks": [{"src": name, "settings": local} for name in names[start : start + 100]]}
        done = subprocess.run(["node", "test/drive.mjs", json.dumps(piece)], cwd=EXTENSION,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"drive.mjs failed on images {start}-{start + 99}: {done.stderr[-2000:]}")
        results += [item["verdict"] for item in json.loads(done.stdout)["results"]]
    return results


def compare(title: str, sizes: list[tuple[int, int]], service: list[list[Box]], browser: list[dict],
            service_ms: list[float]) -> None:
    browser_boxes = [[Box(**face["box"]) for face in verdict.get("faces", [])] for verdict in browser]
    same_count = sum(len(s) == len(b) for s, b in zip(service, browser_boxes, strict=True))
    box_ious, crop_ious = [], []
    for (width, height), ours, theirs in zip(sizes, service, browser_boxes, strict=True):
        for s, b in zip(ours, theirs, strict=False):
            box_ious.append(iou(s, b))
            crop_ious.append(iou(crop_box(s, width, height), crop_box(b, width, height)))
    browser_ms = [verdict["timings"]["faces_ms"] for verdict in browser if verdict.get("timings")]
    print(f"\n{title}: {len(sizes)} images")
    print(f"  images with a face: service {sum(map(bool, service))}, browser {sum(map(bool, browser_boxes))}; "
          f"faces: service {sum(map(len, service))}, browser {sum(map(len, browser_boxes))}; "
          f"same number of faces in {same_count}")
    if box_ious:
        for name, values in (("box IoU", box_ious), ("crop IoU", crop_ious)):
            p0, p10, median = np.percentile(values, [0, 10, 50])
            print(f"  {name} over {len(values)} face pairs: min {p0:.4f}, p10 {p10:.4f}, median {median:.4f}; "
                  f">= 0.95: {np.mean(np.asarray(values) >= 0.95):.1%}; exactly equal: "
                  f"{np.mean(np.asarray(values) == 1.0):.1%}")
    print(f"  face finding per image, median (p90): service {np.median(service_ms):.1f} ms "
          f"({np.percentile(service_ms, 90):.1f}), browser {np.median(browser_ms):.1f} ms "
          f"({np.percentile(browser_ms, 90):.1f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--frame", type=int, default=1024)
    parser.add_argument("--face-side", type=int, default=256)
    parser.add_argument("--originals", type=int, default=0, help="test images as they are (-1: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    makers = list(backgrounds(args.frame).values())
    finder = default_finder()
    finder.find(np.zeros((64, 64, 3), np.uint8))  # traced once, outside the timings

    def service_side(pixels):
        started = time.perf_counter()
        found = finder.find(pixels)
        return [face.box for face in found], (time.perf_counter() - started) * 1000

    with tempfile.TemporaryDirectory() as folder:
        site = Path(folder)
        sets = []
        if args.per_class > 0:
            names, sizes, service, ms = [], [], [], []
            for index, example in enumerate(sample(args.data, "test", args.per_class, args.seed)):
                background = makers[index % len(makers)](rng)
                pixels, _ = scene(load_image(example.path).pixels, background, args.face_side, rng)
                names.append(f"scene{index:04d}.png")
                Image.fromarray(pixels).save(site / names[-1])
                sizes.append((pixels.shape[1], pixels.shape[0]))
                boxes, elapsed = service_side(pixels)
                service.append(boxes)
                ms.append(elapsed)
            sets.append((f"scenes ({args.face_side} px faces in {args.frame} px)", names, sizes, service, ms))
        if args.originals:
            examples = list_split(args.data, "test")
            if args.originals > 0:
                order = np.random.default_rng(args.seed).permutation(len(examples))
                examples = [examples[i] for i in order[: args.originals]]
            names, sizes, service, ms = [], [], [], []
            for index, example in enumerate(examples):
                names.append(f"original{index:04d}{example.path.suffix.lower()}")
                shutil.copyfile(example.path, site / names[-1])  # the same bytes for both
                pixels = load_image(site / names[-1]).pixels
                sizes.append((pixels.shape[1], pixels.shape[0]))
                boxes, elapsed = service_side(pixels)
                service.append(boxes)
                ms.append(elapsed)
            sets.append(("original test images", names, sizes, service, ms))
        for title, names, sizes, service, ms in sets:
            compare(title, sizes, service, browser_faces(site, names), ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
