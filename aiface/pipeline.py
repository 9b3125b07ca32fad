"""The one path from image bytes to a detection: decode, find faces, crop, model, verdict's score.

    detection = detect(data, default_finder(), predict, size)

``predict`` takes a batch of model inputs, ``(N, size, size, 3)`` float32,
and returns each one's calibrated P(AI-generated); the finder is an
``aiface.faces.FaceFinder``, or None to score the whole image. The steps:

1. decode (``aiface.preprocess``: formats, pixel budget, EXIF, 8-bit RGB);
2. find the faces (``aiface.faces``), several images in one batch where
   there are several;
3. each face's region (``aiface.faces.scored_box``: its crop, or the whole
   centred square when the face fills the frame), or the whole centred square
   when no face was found or no finder given, made into model input;
4. the model on every region, in batches;
5. the detection: the highest region score is the image's, each face keeps
   its own score, boxes in the full upright image's pixels.

The service (``server/detector.py``) runs ``detect`` on each upload, holding
room in its pixel budget while it decodes and prepares, then the model through
its micro-batcher or TF Serving. ``aiface scan`` runs ``detect_many`` on a
chunk of decoded images at once; ``training.evaluation.scoring`` and the benchmarks
prepare many images, ``score`` all their regions in batches and conclude each.
What is answered about an image (the detection with the file's provenance) is
``aiface.answer``. The browser
extension mirrors the same steps (``extension/src/offscreen.js``, ``faces.js``, ``crop.js``; parity
tests in ``tests/test_face_parity_browser.py``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np

from aiface.faces import Box, Face, FaceFinder, crop, pool_map, scored_box, whole_image_box
from aiface.preprocess import MAX_PIXELS, LoadedImage, OpenedImage, to_model_input

Predict = Callable[[np.ndarray], np.ndarray]
FACES, WHOLE_IMAGE = "faces", "whole_image"


@dataclass(frozen=True)
class Region:
    box: Box  # what is scored, in the decoded pixels
    face: Box | None  # the face it frames, None for the whole image
    input: np.ndarray = field(repr=False, compare=False)  # (size, size, 3) float32


@dataclass(frozen=True)
class Prepared:
    """An image made ready for the model: its size, and the regions to score; the pixels are gone."""

    width: int  # the full upright image's
    height: int
    scale: tuple[float, float]  # from decoded pixels to the full image's (aiface.preprocess, step 1a)
    regions: tuple[Region, ...]


@dataclass(frozen=True)
class ScoredFace:
    box: Box  # the face as found, in the upright image's pixels
    probability_fake: float


@dataclass(frozen=True)
class Detection:
    probability_fake: float
    width: int
    height: int
    elapsed_ms: float = 0.0
    faces: tuple[ScoredFace, ...] = ()
    # FACES when faces were found and scored, else WHOLE_IMAGE.
    scored: str = WHOLE_IMAGE
    # The region whose score is the verdict (full image's pixels), and its model input, for an explanation.
    region: Box | None = None
    region_input: np.ndarray | None = field(default=None, repr=False, compare=False)


Frame = Callable[[Box, int, int], Box]


def regions(pixels: np.ndarray, faces: Sequence[Face], size: int, frame: Frame = scored_box) -> tuple[Region, ...]:
    """Step 3: the region of each face, or the whole centred square when there is none.

    ``frame`` is the rule from a face to its region (a benchmark measures others).
    """
    height, width = pixels.shape[:2]
    if not faces:
        return (Region(whole_image_box(width, height), None, to_model_input(pixels, size)),)
    found = []
    for face in faces:
        box = frame(face.box, width, height)
        found.append(Region(box, face.box, to_model_input(crop(pixels, box), size)))
    return tuple(found)


def prepare_many(images: Sequence[LoadedImage], finder: FaceFinder | None, size: int,
                 pool: Executor | None = None, frame: Frame = scored_box) -> list[Prepared]:
    """Steps 2 and 3 for decoded images, faces found in batches; ``pool`` shares the resizing out."""
    found = finder.find_many([image.pixels for image in images], pool) if finder is not None else [[]] * len(images)

    def one(image: LoadedImage, faces: list[Face]) -> Prepared:
        return Prepared(image.width, image.height, image.scale, regions(image.pixels, faces, size, frame))

    return pool_map(pool, one, images, found)


def prepare(image: LoadedImage, finder: FaceFinder | None, size: int) -> Prepared:
    return prepare_many([image], finder, size)[0]


def score(prepared: Sequence[Prepared], predict: Predict, batch_size: int = 16) -> list[np.ndarray]:
    """Step 4: every region of every image through ``predict``, ``batch_size`` at a time; scores per image.

    Whatever ``predict`` returns per input (a probability, or a row such as
    ``training.evaluation.scoring``'s probability and logit) comes back per image, in order.
    """
    inputs = [region.input for item in prepared for region in item.regions]
    outputs = [np.asarray(predict(np.stack(inputs[start : start + batch_size])))
               for start in range(0, len(inputs), batch_size)]
    if not outputs:
        return [np.zeros(0) for _ in prepared]
    return np.split(np.concatenate(outputs), np.cumsum([len(item.regions) for item in prepared])[:-1])


def best_region(scores: Sequence[float]) -> int:
    """Which region decides: the highest score, the first of equals."""
    return int(np.argmax(scores))


def conclude(prepared: Prepared, scores: Sequence[float], keep_input: bool = False,
             elapsed_ms: float = 0.0) -> Detection:
    """Step 5: the detection from each region's score; ``keep_input`` keeps the deciding region's model input."""
    best = best_region(scores)
    chosen = prepared.regions[best]
    size = (prepared.width, prepared.height)
    return Detection(
        probability_fake=float(scores[best]),
        width=prepared.width,
        height=prepared.height,
        elapsed_ms=elapsed_ms,
        faces=tuple(
            ScoredFace(_scaled(region.face, prepared.scale, size), float(p))
            for region, p in zip(prepared.regions, scores, strict=True)
            if region.face is not None
        ),
        scored=WHOLE_IMAGE if chosen.face is None else FACES,
        region=_scaled(chosen.box, prepared.scale, size),
        region_input=chosen.input if keep_input else None,
    )


def detect_many(images: Sequence[LoadedImage], finder: FaceFinder | None, predict: Predict, size: int,
                batch_size: int = 16, pool: Executor | None = None) -> list[Detection]:
    """Steps 2 to 5 for decoded images."""
    prepared = prepare_many(images, finder, size, pool)
    return [conclude(item, scores) for item, scores in zip(prepared, score(prepared, predict, batch_size),
                                                            strict=True)]


def detect(source: bytes | str | os.PathLike, finder: FaceFinder | None, predict: Predict, size: int,
           max_pixels: int = MAX_PIXELS, keep_input: bool = True,
           hold: Callable[[int], AbstractContextManager] = nullcontext) -> Detection:
    """Every step for one image's bytes (or file); raises aiface.preprocess.ImageError for bad input.

    ``hold(pixels)`` is entered once the header says how many pixels decoding
    will make, and held while the image is decoded and its regions made (the
    service waits there for room in its pixel budget); only the model inputs
    wait for the model. ``predict`` gets all the image's regions in one call
    (the service's micro-batcher batches them with other requests').
    """
    start = time.perf_counter()
    with OpenedImage(source, max_pixels) as opened, hold(opened.decoded_pixels):
        prepared = prepare(opened.load(), finder, size)
    scores = score([prepared], predict, batch_size=len(prepared.regions))[0]
    return conclude(prepared, scores, keep_input, (time.perf_counter() - start) * 1000.0)


def _scaled(box: Box | None, scale: tuple[float, float], size: tuple[int, int]) -> Box | None:
    """A box in reduced pixels (aiface.preprocess, step 1a) in the full image's pixels, inside the image."""
    if box is None or scale == (1.0, 1.0):
        return box
    (scale_x, scale_y), (width, height) = scale, size
    x, y = min(round(box.x * scale_x), width - 1), min(round(box.y * scale_y), height - 1)
    return Box(x, y, min(round(box.width * scale_x), width - x), min(round(box.height * scale_y), height - y))
