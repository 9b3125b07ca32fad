"""Does scoring the face's crop beat scoring the whole frame when the face is small?

Takes ``--per-class`` real and fake images of a labelled folder (140k layout),
shrinks or enlarges each face-centred image to ``--face-fraction`` of a
``--frame`` px square scene at a random place on a background (synthetic
gradients, textures and stripes; scikit-image's public-domain photos coffee,
rocket and chelsea too when scikit-image is installed), and scores every
scene, and the original images as they are (the training framing), three
ways through the service's inference path (``aiface.pipeline``):

- whole image: no face finder (the service's ``FACE_DETECTION=0``), the
  centred square downscaled;
- face crops: every face cropped (``aiface.faces.crop_box`` as the region:
  the service before the face-filling rule);
- rule: as shipped, where a face whose crop fills the frame is scored as the
  whole centred square (``aiface.faces.scored_box``).

Prints accuracy, balanced accuracy and ROC AUC at the model's threshold, how
often a face was found, filled the frame, and was the pasted one; then the
rule at other ``FILL_FRACTION`` values, worked out from the same runs (with
how many images had a face scored whole).

    .venv/bin/python benchmarks/face_crop_gain.py server/model/aiface.keras DATA_DIR [--face-fraction 0.25 0.7]
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from PIL import Image

from aiface.bundle import load_bundle
from aiface.faces import FILL_FRACTION, Box, FaceFinder, crop_box, default_finder, fills_frame
from aiface.pipeline import Detection, Predict, conclude, detect_many, prepare_many, score
from aiface.preprocess import ImageError, load_image
from training.data.layout import list_split
from training.evaluation import metrics

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
        makers[name] = lambda rng, photo=np.asarray(photo): photo  # noqa: B008 (binds this loop's photo)
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


def rule_score(detection: Detection, whole_score: float, limit: float) -> tuple[float, bool]:
    """The verdict the rule at ``limit`` gives, from an every-face-cropped detection and the whole square's score.

    A face whose crop fills the frame scores the whole square (``aiface.faces.scored_box``), the others
    keep their crop's score; the verdict is the highest. Returns it and whether any face filled the frame.
    """
    if not detection.faces:
        return whole_score, False
    fills = [fills_frame(crop_box(face.box, detection.width, detection.height), detection.width, detection.height,
                         limit) for face in detection.faces]
    scores = [whole_score if fill else face.probability_fake for face, fill in zip(detection.faces, fills, strict=True)]
    return max(scores), any(fills)


class Ways:
    """The three ways of scoring a chunk of encoded images, through aiface.pipeline."""

    def __init__(self, finder: FaceFinder, predict: Predict, size: int):
        self.finder, self.predict, self.size = finder, predict, size

    def score(self, chunk: list[bytes]) -> tuple[list[Detection], list[Detection], list[Detection]]:
        """(whole image, every face cropped, the rule as shipped) detections of each image."""
        images = [load_image(data) for data in chunk]
        whole = detect_many(images, None, self.predict, self.size)
        prepared = prepare_many(images, self.finder, self.size, frame=crop_box)
        cropped = [conclude(item, scores) for item, scores in zip(prepared, score(prepared, self.predict), strict=True)]
        return whole, cropped, detect_many(images, self.finder, self.predict, self.size)


def score_set(name: str, images: list[bytes], ways: Ways, scores: dict, sweep: dict, counts: dict) -> list[Detection]:
    """Scores ``images`` whole, every face cropped, and with the face-filling rule as shipped; returns the last."""
    rows = {f"{name}, whole image": [], f"{name}, face crops": [], f"{name}, rule": []}
    shipped_all = []
    for first in range(0, len(images), CHUNK):
        whole, cropped, ruled = ways.score(images[first : first + CHUNK])
        whole_scores = [d.probability_fake for d in whole]
        rows[f"{name}, whole image"] += whole_scores
        rows[f"{name}, face crops"] += [d.probability_fake for d in cropped]
        rows[f"{name}, rule"] += [d.probability_fake for d in ruled]
        shipped_all += ruled
        for detection, whole_score, shipped in zip(cropped, whole_scores, ruled, strict=True):
            counts[name]["found"] += detection.scored == "faces"
            counts[name]["filled"] += rule_score(detection, whole_score, FILL_FRACTION)[1]
            # The rule worked out from the two runs is what the pipeline gives (same pixels, same model).
            assert abs(rule_score(detection, whole_score, FILL_FRACTION)[0] - shipped.probability_fake) < 1e-5
            for limit in SWEEP:
                sweep[name][limit].append(rule_score(detection, whole_score, limit))
    scores.update(rows)
    return shipped_all


SWEEP = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, math.inf)


def _row(name: str, labels: np.ndarray, values, threshold: float) -> str:
    values = np.asarray(values)
    calls = values >= threshold
    return (f"{name:<30}{metrics.accuracy(labels, values, threshold):>10.4f}"
            f"{metrics.balanced_accuracy(labels, values, threshold):>10.4f}{metrics.roc_auc(labels, values):>9.4f}"
            f"{np.mean(~calls[labels == 0]):>9.3f}{np.mean(calls[labels == 1]):>9.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--per-class", type=int, default=150)
    parser.add_argument("--frame", type=int, default=1024, help="scene side in pixels")
    parser.add_argument("--face-fraction", type=float, nargs="+", default=[0.25],
                        help="face image side / scene side; several values, one set of scenes each")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    bundle = load_bundle(args.model)
    threshold = bundle.metadata.threshold
    ways = Ways(default_finder(), bundle.predictor(), bundle.metadata.image_size)
    makers = backgrounds(args.frame)
    names = list(makers)
    rng = np.random.default_rng(args.seed)

    labels, originals, skipped = [], [], 0
    scenes = {fraction: ([], []) for fraction in args.face_fraction}  # fraction -> (encoded scenes, where)
    for index, example in enumerate(sample(args.data_dir, args.split, args.per_class, args.seed)):
        try:
            pixels = load_image(example.path).pixels
        except ImageError:
            skipped += 1
            continue
        labels.append(example.label)
        originals.append(example.path.read_bytes())
        for fraction, (encoded, where) in scenes.items():
            background = makers[names[index % len(names)]](rng)
            pixels_in_scene, box = scene(pixels, background, round(fraction * args.frame), rng)
            encoded.append(encode(pixels_in_scene))
            where.append(box)

    start = time.perf_counter()
    scores: dict[str, list[float]] = {}
    sets = ["original"] + [f"scene {fraction:g}" for fraction in args.face_fraction]
    sweep = {name: {limit: [] for limit in SWEEP} for name in sets}
    counts = {name: {"found": 0, "filled": 0} for name in sets}
    score_set("original", originals, ways, scores, sweep, counts)
    placed = {}
    for fraction, (encoded, where) in scenes.items():
        name = f"scene {fraction:g}"
        right = wrong = 0
        for detection, box in zip(score_set(name, encoded, ways, scores, sweep, counts), where, strict=True):
            hits = [inside(f.box.x + f.box.width / 2, f.box.y + f.box.height / 2, box) for f in detection.faces]
            right += any(hits)
            wrong += hits.count(False)
        placed[name] = (right, wrong)
    elapsed = time.perf_counter() - start

    labels = np.asarray(labels)
    reals, fakes = int((labels == 0).sum()), int((labels == 1).sum())
    meta = bundle.metadata
    print(f"model {args.model} ({meta.name} {meta.version}, {meta.backbone}, {meta.image_size} px, threshold "
          f"{threshold:.3f}); {args.data_dir} split {args.split}: {reals} real, {fakes} fake ({skipped} unreadable), "
          f"seed {args.seed}; FILL_FRACTION {FILL_FRACTION:g}")
    print(f"scenes: {args.frame} px square, face image {', '.join(f'{f:.0%}' for f in args.face_fraction)} of the side "
          f"at a random place; backgrounds in turn: {', '.join(names)}; {elapsed:.1f} s")
    for name in sets:
        extra = (f"; the pasted face among them in {placed[name][0]}, {placed[name][1]} faces found elsewhere"
                 if name in placed else "")
        print(f"{name}: face found in {counts[name]['found']}/{len(labels)}, a face filling the frame (scored whole "
              f"by the rule) in {counts[name]['filled']}{extra}")
    print(f"{'scoring':<30}{'accuracy':>10}{'balanced':>10}{'ROC AUC':>9}{'real ok':>9}{'fake ok':>9}")
    for name, values in scores.items():
        print(_row(name, labels, values, threshold))
    print("the rule at other FILL_FRACTION values (inf: every face cropped), from the same runs:")
    print(f"{'set, FILL_FRACTION':<30}{'accuracy':>10}{'balanced':>10}{'ROC AUC':>9}{'real ok':>9}{'fake ok':>9}"
          f"{'whole':>7}")
    for name in sets:
        for limit, ruled in sweep[name].items():
            print(_row(f"{name}, {limit:g}", labels, [value for value, _ in ruled], threshold)
                  + f"{sum(filled for _, filled in ruled):>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
