"""A trained model's pooled features of labelled images, under named views, cached on disk.

The features are what the final ``logits`` layer sees: the second-order head's covariance and mean/std
vector (or the average-pooled head's dense output). ``training.add_head`` fits a new head on
them, which takes minutes where fine-tuning the network takes hours on two cores.

A view is what is done to the decoded pixels before the shared preprocessing (``aiface.preprocess``):
``clean`` (nothing), ``laundered`` (``training.data.launder``) or ``degraded`` (``training.data.augment.degrade``
always applied: resampling, blur up to ``MAX_BLUR`` px, colour jitter, JPEG, sometimes the laundering).
The degraded view's random draw is seeded by the file's *name*, so an aligned pair (a photo and its
reconstruction share their name, ``training.aligned``) gets the same draw for both images: a blur that
only one of them had would teach "blurred = fake" or "sharp = real".

With a face finder (``aiface.faces``), each image's features are those of its largest face's region, framed and
resized exactly as ``aiface.pipeline`` frames what the service scores (the whole centred square when no face is
found): a head fitted on them is fitted on what it will be shown.

Features are cached per model file, view, framing and list of images (``CACHE/<digest>.npy`` with the images'
paths beside it), so that fits with other settings, or without some sources, need no second pass.
Files that cannot be read are skipped and named.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from aiface.bundle import Bundle
from aiface.faces import FaceFinder
from aiface.pipeline import prepare_many
from aiface.preprocess import ImageError, LoadedImage, load_image, to_model_input
from training.data.augment import AugmentConfig, degrade
from training.data.launder import launder
from training.data.layout import Example

MAX_BLUR = 2.0
# Every degraded draw is degraded (the training default degrades 30 %): the clean view is its own view.
DEGRADE = AugmentConfig(degrade_prob=1.0, launder_prob=0.25, blur_prob=0.5, max_blur_radius=MAX_BLUR)
VIEWS = ("clean", "degraded", "laundered")


def view_transform(view: str) -> Callable[[np.ndarray, str], np.ndarray]:
    """(pixels, file name) -> pixels for the view named ``view``."""
    if view == "clean":
        return lambda pixels, name: pixels
    if view == "laundered":
        return lambda pixels, name: launder(pixels)
    if view == "degraded":
        return lambda pixels, name: degrade(pixels, np.random.default_rng([1, zlib.crc32(name.encode())]), DEGRADE)
    raise ValueError(f"unknown view {view!r}; choose one of: {', '.join(VIEWS)}")


def feature_model(model):
    """The model up to its pooled features (what its final Dense layer, or its heads, see), traced once for any
    batch size."""
    import keras
    import tensorflow as tf

    from training.models.backbones import HEADS_LAYER, LOGITS_LAYER, has_heads

    inner = keras.Model(model.inputs, model.get_layer(HEADS_LAYER if has_heads(model) else LOGITS_LAYER).input)
    size = model.input_shape[1]
    serve = tf.function(lambda batch: inner(batch, training=False),
                        input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)], autograph=False)
    return lambda batch: serve(np.asarray(batch, np.float32)).numpy()


def _digest(model_path: Path, view: str, examples: Sequence[Example], faces: bool) -> str:
    hasher = hashlib.sha256()
    with open(model_path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    hasher.update(view.encode())
    if faces:
        hasher.update(b"\0faces")
    for example in examples:
        hasher.update(f"\0{example.path}\0{example.label}".encode())
    return hasher.hexdigest()[:24]


def extract(
    bundle: Bundle, model_path: Path, examples: Sequence[Example], view: str, cache: Path | None = None,
    batch_size: int = 32, workers: int = 4, progress: str | None = None, finder: FaceFinder | None = None,
) -> tuple[np.ndarray, list[Example]]:
    """(features, the examples they belong to): float32 (N, D), in input order, unreadable files left out.

    ``finder``: each image's largest face is framed as the service frames it; None: the whole centred square.
    """
    transform = view_transform(view)
    if cache is not None:
        stem = cache / _digest(model_path, view, examples, finder is not None)
        if stem.with_suffix(".npy").is_file() and stem.with_suffix(".json").is_file():
            kept = set(json.loads(stem.with_suffix(".json").read_text())["paths"])
            return np.load(stem.with_suffix(".npy")), [e for e in examples if str(e.path) in kept]
    size = bundle.metadata.image_size
    features_of = feature_model(bundle.model)

    def load(example: Example) -> np.ndarray | str:
        try:
            pixels = load_image(example.path).pixels
        except (ImageError, OSError) as error:
            return str(error)
        pixels = transform(pixels, example.path.name)
        return pixels if finder is not None else to_model_input(pixels, size)

    def largest_face(pixels: list[np.ndarray], pool: ThreadPoolExecutor) -> list[np.ndarray]:
        prepared = prepare_many([LoadedImage(p) for p in pixels], finder, size, pool)
        return [max(item.regions, key=lambda r: r.box.width * r.box.height).input for item in prepared]

    rows, kept = [], []
    bar = tqdm(total=len(examples), desc=progress, unit="img", file=sys.stderr, disable=not progress,
               mininterval=0.5 if sys.stderr.isatty() else 30.0)

    def finish(part: Sequence[Example], futures: list, pool: ThreadPoolExecutor) -> None:
        images = []
        for example, future in zip(part, futures, strict=True):
            image = future.result()
            if isinstance(image, str):
                print(f"skipped {example.path}: {image}", file=sys.stderr)
                continue
            images.append(image)
            kept.append(example)
        if images:
            rows.append(features_of(np.stack(largest_face(images, pool) if finder is not None else images)))
        bar.update(len(part))

    # Decoding runs a batch ahead of the network, in threads (Pillow and numpy release the GIL).
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = None
        for start in range(0, len(examples), batch_size):
            part = examples[start : start + batch_size]
            futures = [pool.submit(load, example) for example in part]
            if pending is not None:
                finish(*pending, pool)
            pending = (part, futures)
        if pending is not None:
            finish(*pending, pool)
    bar.close()
    features = np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.save(stem.with_suffix(".partial.npy"), features)
        stem.with_suffix(".partial.npy").replace(stem.with_suffix(".npy"))
        stem.with_suffix(".json").write_text(json.dumps({"view": view, "paths": [str(e.path) for e in kept]}))
    return features, kept
