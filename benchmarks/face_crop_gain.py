"""Does scoring the face's crop beat scoring the whole frame when the face is small?

Takes ``--per-class`` real and fake images of a labelled folder (140k layout),
shrinks or enlarges each face-centred image to ``--face-fraction`` of a
``--frame`` px square scene at a random place on a background (synthetic
gradients, textures and stripes; scikit-image's public-domain photos coffee,
rocket and chelsea too when scikit-image is installed), and scores every
scene the two ways the service can (``server/detector.py``, through its
micro-batcher):

- whole image: ``FACE_DETECTION=0``, the scene's centred square downscaled;
- face crops: ``FACE_DETECTION=1``, as shipped (the whole image when no face is found);

beside the original images as they are (the training framing: the ceiling).
Prints accuracy, balanced accuracy and ROC AUC at the model's threshold, how
often a face was found, and how often the face found was the pasted one.

    .venv/bin/python benchmarks/face_crop_gain.py server/model/aiface.keras DATA_DIR
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from PIL import Image

from aiface.bundle import load_bundle
from aiface.faces import Box
from aiface.preprocess import ImageError, load_image
from server.config import DEFAULTS
from server.detector import Detector
from training import metrics
from training.layout import list_split

CHUNK = 16


def _gradient(rng: np.random.Generator, side: int) -> np.ndarray:
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, np.pi)
    y, x = np.mgrid[0:side, 0:side] / side
    t = (np.cos(angle) * x + np.sin(angle) * y - min(0, np.cos(angle))) / (abs(np.cos(angle)) + np.sin(angle))
    return (start + t[:, :, None] * (end - start)).clip(0, 255).astype(np.uint8)


def _texture(rng: np.random.Generator, side: int) -> np.ndarray:
    coarse = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((side, side), Image.BICUBIC), np.float64)
    return (smooth + rng.normal(0, 12, smooth.shape)).clip(0, 255).astype(np.uint8)


def _stripes(rng: np.random.Generator, side: int) -> np.ndarray:
    period, angle = rng.uniform(20, 120), rng.uniform(0, np.pi)
    y, x = np.mgrid[0:side, 0:side]
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * (np.cos(angle) * x + np.sin(angle) * y) / period)
    light, dark = rng.uniform(140, 255, 3), rng.uniform(0, 110, 3)
    return (dark + wave[:, :, None] * (light - dark)).astype(np.uint8)


def backgrounds(side: int) -> dict[str, callable]:
    """Name -> rng -> (side, side, 3) uint8 background."""
    makers = {
        "gradient": lambda rng: _gradient(rng, side),
        "texture": lambda rng: _texture(rng, side),
        "stripes": lambda rng: _stripes(rng, side),
    }
    try:
        from skimage import data
    except ImportError:
        return makers
    for name in ("coffee", "rocket", "chelsea"):
        photo = Image.fromarray(getattr(data, name)()).resize((side, side), Image.LANCZOS)
        makers[name] = lambda rng, photo=np.asarray(photo): photo
    return makers


def scene(face: np.ndarray, background: np.ndarray, face_side: int, rng: np.random.Generator) -> tuple[np.ndarray, Box]:
    """The face image resized to face_side and pasted at a random place; returns where."""
    side = background.shape[0]
    resized = np.asarray(Image.fromarray(face).resize((face_side, face_side), Image.LANCZOS))
    x, y = (int(v) for v in rng.integers(0, side - face_side + 1, 2))
    pixels = background.copy()
    pixels[y : y + face_side, x : x + face_side] = resized
    return pixels, Box(x, y, face_side, face_side)


def encode(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="BMP")  # lossless and fast
    return buffer.getvalue()


def sample(data_dir: Path, split: str, per_class: int, seed: int):
    examples = list_split(data_dir, split)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in (0, 1):
        pool = [example for example in examples if example.label == label]
        chosen += [pool[i] for i in rng.permutation(len(pool))[:per_class]]
    return chosen


def inside(point_x: float, point_y: float, box: Box) -> bool:
    return box.x <= point_x < box.x + box.width and box.y <= point_y < box.y + box.height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--per-class", type=int, default=150)
    parser.add_argument("--frame", type=int, default=1024, help="scene side in pixels")
    parser.add_argument("--face-fraction", type=float, default=0.25, help="face image side / scene side")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    bundle = load_bundle(args.model)
    threshold = bundle.metadata.threshold
    base = {**DEFAULTS, "MODEL_PATH": str(args.model)}
    whole = Detector(bundle, {**base, "FACE_DETECTION": False})
    faces = Detector(bundle, {**base, "FACE_DETECTION": True})
    makers = backgrounds(args.frame)
    names = list(makers)
    face_side = round(args.face_fraction * args.frame)
    rng = np.random.default_rng(args.seed)

    labels, originals, scenes, where, skipped = [], [], [], [], 0
    for index, example in enumerate(sample(args.data_dir, args.split, args.per_class, args.seed)):
        try:
            pixels = load_image(example.path).pixels
        except ImageError:
            skipped += 1
            continue
        labels.append(example.label)
        originals.append(example.path.read_bytes())
        pixels_in_scene, box = scene(pixels, makers[names[index % len(names)]](rng), face_side, rng)
        scenes.append(encode(pixels_in_scene))
        where.append(box)

    start = time.perf_counter()
    scores = {"original image": [], "scene, whole image": [], "scene, face crops": []}
    found = right = wrong = 0
    found_by_class = [0, 0]
    for first in range(0, len(labels), CHUNK):
        chunk = slice(first, first + CHUNK)
        scores["original image"] += [d.probability_fake for d in whole.detect_many(originals[chunk])]
        scores["scene, whole image"] += [d.probability_fake for d in whole.detect_many(scenes[chunk])]
        for detection, box, label in zip(faces.detect_many(scenes[chunk]), where[chunk], labels[chunk]):
            scores["scene, face crops"].append(detection.probability_fake)
            if detection.scored == "faces":
                found += 1
                found_by_class[label] += 1
            hits = [inside(f.box.x + f.box.width / 2, f.box.y + f.box.height / 2, box) for f in detection.faces]
            right += any(hits)
            wrong += hits.count(False)
    elapsed = time.perf_counter() - start

    labels = np.asarray(labels)
    reals, fakes = int((labels == 0).sum()), int((labels == 1).sum())
    print(f"model {args.model} ({bundle.metadata.backbone}, {bundle.metadata.image_size} px, threshold {threshold:.3f}); "
          f"{args.data_dir} split {args.split}: {reals} real, {fakes} fake ({skipped} unreadable), seed {args.seed}")
    print(f"scenes: {args.frame} px square, face image {face_side} px ({args.face_fraction:.0%} of the side) at a random "
          f"place; backgrounds in turn: {', '.join(names)}; {elapsed:.1f} s")
    print(f"face found in {found}/{len(labels)} scenes (real {found_by_class[0]}/{reals}, fake {found_by_class[1]}/{fakes}); "
          f"the pasted face among them in {right}; {wrong} faces found elsewhere")
    print(f"{'scoring':<22}{'accuracy':>10}{'balanced':>10}{'ROC AUC':>9}{'real ok':>9}{'fake ok':>9}")
    for name, values in scores.items():
        values = np.asarray(values)
        calls = values >= threshold
        print(f"{name:<22}{metrics.accuracy(labels, values, threshold):>10.4f}"
              f"{metrics.balanced_accuracy(labels, values, threshold):>10.4f}{metrics.roc_auc(labels, values):>9.4f}"
              f"{np.mean(~calls[labels == 0]):>9.3f}{np.mean(calls[labels == 1]):>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
