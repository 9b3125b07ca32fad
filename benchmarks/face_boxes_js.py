"""How the extension's face boxes compare with the server's on the same faces.

The crop rule (``aiface/faces.py`` ``crop_box``, mirrored by
``extension/src/crop.js``) was measured with MTCNN's boxes; the extension
finds faces with face-api's tiny detector, whose boxes are framed
differently, and maps each to the MTCNN box of the same face with
``TINY_TO_MTCNN`` in ``extension/src/faces.js``. This prints how far the
mapped boxes still are from MTCNN's: with the map at identity
(``{width: 1, height: 1, centreX: 0, centreY: 0}``) its medians are the map.

Takes ``--per-class`` real and fake test images of a labelled folder, pastes
each at ``--face-side`` px into a ``--frame`` px scene (the backgrounds of
``face_crop_gain.py``), finds faces with MTCNN here and with the built
extension in headless Chromium (``extension/test/drive.mjs``), and prints, for
the faces both found: MTCNN / extension width and height, the centre offset
(MTCNN − extension) in units of the extension box's longer side, the boxes'
IoU and the IoU of the crops each gives.

    .venv/bin/python benchmarks/face_boxes_js.py ../shared/data [--per-class 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from PIL import Image

from face_crop_gain import backgrounds, sample, scene
from aiface.faces import Box, crop_box, default_finder, iou
from aiface.preprocess import load_image

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = ROOT / "extension"


def js_boxes(site: Path, names: list[str]) -> list[Box | None]:
    """The extension's deciding face box for each image (None: no face found)."""
    request = {"extensionDir": str(EXTENSION), "chromium": shutil.which("chromium") or "/usr/bin/chromium",
               "siteDir": str(site), "checks": [{"src": name} for name in names]}
    subprocess.run(["npm", "run", "build", "--silent"], cwd=EXTENSION, check=True)
    result = subprocess.run(["node", "test/drive.mjs", json.dumps(request)], cwd=EXTENSION,
                            capture_output=True, text=True, check=True)
    return [Box(**item["faceBox"]) if item["faceBox"] else None for item in json.loads(result.stdout)["results"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--frame", type=int, default=1024)
    parser.add_argument("--face-side", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    makers = list(backgrounds(args.frame).values())
    finder = default_finder()
    with tempfile.TemporaryDirectory() as folder:
        site = Path(folder)
        names, server = [], []
        for index, example in enumerate(sample(args.data, "test", args.per_class, args.seed)):
            face = load_image(example.path).pixels
            pixels, _ = scene(face, makers[index % len(makers)](rng), args.face_side, rng)
            names.append(f"{index:03d}.png")
            Image.fromarray(pixels).save(site / names[-1])
            found = finder.find(pixels)
            server.append(found[0].box if found else None)
        browser = js_boxes(site, names)

    pairs = [(m, j) for m, j in zip(server, browser) if m and j]
    print(f"{len(names)} scenes ({args.face_side} px faces in {args.frame} px): MTCNN found {sum(map(bool, server))}, "
          f"the extension {sum(map(bool, browser))}, both {len(pairs)}")
    if not pairs:
        return 1
    side = lambda box: max(box.width, box.height)  # noqa: E731
    rows = {
        "width ratio (MTCNN / extension)": [m.width / j.width for m, j in pairs],
        "height ratio (MTCNN / extension)": [m.height / j.height for m, j in pairs],
        "centre x offset / extension side": [(m.x + m.width / 2 - j.x - j.width / 2) / side(j) for m, j in pairs],
        "centre y offset / extension side": [(m.y + m.height / 2 - j.y - j.height / 2) / side(j) for m, j in pairs],
        "box IoU": [iou(m, j) for m, j in pairs],
        "crop IoU": [iou(crop_box(m, args.frame, args.frame), crop_box(j, args.frame, args.frame)) for m, j in pairs],
    }
    print(f"{'':36} {'median':>8} {'p10':>8} {'p90':>8}")
    for name, values in rows.items():
        p10, median, p90 = np.percentile(values, [10, 50, 90])
        print(f"{name:36} {median:8.3f} {p10:8.3f} {p90:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
