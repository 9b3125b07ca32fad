"""Scoring labelled images with a model bundle, in batches, through the service's path.

Images go through ``aiface.pipeline`` as the service scores them: decoded,
faces found with ``finder`` (each face's region scored, the highest score
the image's), or, with no finder, the whole image's centred square; an
optional pixel transform (laundering, ``training.data.launder``) is applied to
the decoded image first, as a user's copy would have been. Decoding runs in
a thread pool one batch ahead of the model (Pillow and numpy release the GIL
for most of the work). Files that cannot be read are skipped, counted and
named, never a crash.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from aiface.bundle import Bundle
from aiface.faces import FaceFinder
from aiface.pipeline import FACES, best_region, conclude, prepare_many, score
from aiface.preprocess import LoadedImage, load_image
from training.data.layout import Example
from training.evaluation import metrics

Transform = Callable[[np.ndarray], np.ndarray]
# Smallest positive float32: softmax outputs that underflowed to 0 still give a finite logit
# (only for models saved without a ``logits`` layer).
_TINY = float(np.finfo(np.float32).tiny)


@dataclass
class Scores:
    """The model's verdict on each image that could be read, in input order."""

    examples: list[Example]
    p_fake: np.ndarray  # float64, the bundle's (calibrated) P(fake)
    logits: np.ndarray  # float64, log P(fake) - log P(real) of the same softmax
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    # Per image, what was scored: aiface.pipeline.FACES or WHOLE_IMAGE.
    scored: list[str] = field(default_factory=list)

    @property
    def scored_on_faces(self) -> int:
        return sum(what == FACES for what in self.scored)

    @property
    def labels(self) -> np.ndarray:
        return np.array([example.label for example in self.examples], dtype=np.int64)

    @property
    def sources(self) -> np.ndarray:
        return np.array([example.source for example in self.examples], dtype=object)

    def summary(self, threshold: float, mask: np.ndarray | None = None) -> dict | None:
        """``metrics.summary`` of the images in ``mask`` (all by default); None when there are none."""
        if mask is None:
            mask = np.ones(len(self.examples), bool)
        if not mask.any():
            return None
        return metrics.summary(self.labels[mask], self.p_fake[mask], threshold)

    def per_source(self, threshold: float) -> dict[str, dict]:
        """The summary of each source, by name."""
        sources = self.sources
        return {name: self.summary(threshold, sources == name) for name in sorted(set(sources))}


def _load(example: Example, transform: Transform | None) -> LoadedImage:
    image = load_image(example.path)
    # A transformed copy is an image of its own, at its own size.
    return LoadedImage(transform(image.pixels)) if transform is not None else image


def _chunks(items: Sequence[Example], size: int) -> Iterator[Sequence[Example]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def score_examples(
    bundle: Bundle,
    examples: Sequence[Example],
    transform: Transform | None = None,
    transform_labels: Collection[int] = (0, 1),
    batch_size: int = 64,
    workers: int = 4,
    progress: str | None = None,
    finder: FaceFinder | None = None,
) -> Scores:
    """Score ``examples``; ``transform`` is applied only to images whose label is in ``transform_labels``.

    ``finder``: faces are found and scored as the service does, or, None,
    each whole image is scored. ``progress``: a name for a progress bar on
    stderr (redrawn in place on a terminal, a line every 30 s in a log
    file), or None for silence.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    size = bundle.metadata.image_size
    logits_model = _logits_model(bundle.model)
    scored: list[Example] = []
    rows: list[np.ndarray] = []  # per image: P(fake), logit
    what: list[str] = []
    skipped: list[tuple[Path, str]] = []
    bar = tqdm(
        total=len(examples),
        desc=progress,
        unit="img",
        file=sys.stderr,
        disable=not progress,
        mininterval=0.5 if sys.stderr.isatty() else 30.0,
    )

    def predict(batch: np.ndarray) -> np.ndarray:
        """(N, 2): each input's P(fake) and logit."""
        if logits_model is None:
            probabilities = np.asarray(bundle.model.predict_on_batch(batch), dtype=np.float64)
            clipped = np.maximum(probabilities, _TINY)
            logits = np.log(clipped[:, 1]) - np.log(clipped[:, 0])
        else:
            pairs, probabilities = (np.asarray(out, dtype=np.float64) for out in logits_model.predict_on_batch(batch))
            logits = pairs[:, 1] - pairs[:, 0]
        return np.stack([probabilities[:, 1], logits], axis=1)

    def finish(batch: Sequence[Example], futures: list[Future], pool: ThreadPoolExecutor) -> None:
        images, kept = [], []
        for example, future in zip(batch, futures, strict=True):
            try:
                images.append(future.result())
            except (ValueError, OSError) as error:  # ImageError is a ValueError
                skipped.append((example.path, str(error)))
                continue
            kept.append(example)
        prepared = prepare_many(images, finder, size, pool)
        for example, item, regions in zip(kept, prepared, score(prepared, predict, batch_size), strict=True):
            scored.append(example)
            rows.append(regions[best_region(regions[:, 0])])  # the deciding region's logit too
            what.append(conclude(item, regions[:, 0]).scored)
        bar.update(len(batch))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = None
        for batch in _chunks(examples, batch_size):
            futures = [
                pool.submit(_load, example, transform if example.label in transform_labels else None)
                for example in batch
            ]
            if pending is not None:
                finish(*pending, pool)
            pending = (batch, futures)
        if pending is not None:
            finish(*pending, pool)
    bar.close()

    table = np.stack(rows) if rows else np.zeros((0, 2))
    if progress and skipped:
        print(f"{progress}: skipped {len(skipped)} unreadable images", file=sys.stderr, flush=True)
    return Scores(examples=scored, p_fake=table[:, 0].copy(), logits=table[:, 1].copy(), skipped=skipped,
                  scored=what)


# One logits model per model: each new one would trace its predict function again
# (training.compare scores every model four times).
_logits_models: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _logits_model(model):
    """The model with its logits as a second output, or None for a model without a ``logits`` layer
    (saved before it existed: its logits are recovered from the softmax, clipped)."""
    import keras

    if model not in _logits_models:
        _logits_models[model] = (
            keras.Model(model.inputs, [model.get_layer("logits").output, model.output])
            if "logits" in {layer.name for layer in model.layers} else None
        )
    return _logits_models[model]
