"""Streaming labelled images into batches with tf.data.

Images are decoded one by one by ``aiface.preprocess`` (the same code the
server runs) inside the pipeline, never all loaded at once. A file that cannot
be read is dropped from the batch and recorded in a ``SkipLog``; training goes
on.

Training batches are drawn by source (``sampling_weights``): the fair pairs,
whose real and fake images share one pipeline and so can only be told apart
by generation artefacts, fill a fixed share of every batch with both classes
equal, and the other sources share the rest, class by class. Without it the
easy sources (where resolution or background gives the label away) dominate
the loss, and the network learns which collection an image came from.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from aiface.preprocess import ImageError, load_image, to_model_input
from training.cli import FAIR_SOURCES
from training.data.augment import AugmentConfig, degrade, random_crop, reframe, zoom_out
from training.data.layout import Example


class SkipLog:
    """Files skipped because they could not be read, shared by pipeline threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._skipped: dict[str, str] = {}
        self._reported = 0

    def add(self, path: str, reason: str) -> None:
        with self._lock:
            self._skipped[path] = reason

    @property
    def skipped(self) -> dict[str, str]:
        with self._lock:
            return dict(self._skipped)

    def report(self) -> None:
        """Name the files skipped since the last report, on stderr."""
        skipped = list(self.skipped.items())
        for path, reason in skipped[self._reported :]:
            print(f"skipped unreadable file {path}: {reason}", file=sys.stderr)
        if skipped:
            print(f"{len(skipped)} unreadable file(s) skipped so far", file=sys.stderr)
        self._reported = len(skipped)


def sampling_weights(
    examples: Sequence[Example], fair_sources: Sequence[str] = FAIR_SOURCES, fair_share: float = 0.5,
    aligned_sources: Sequence[str] = (), aligned_share: float = 0.0,
) -> dict[tuple[str, int], float]:
    """The chance that a draw comes from each (source, label) group; they sum to 1.

    The fair sources get ``fair_share``, split equally between their groups;
    the aligned pairs (``training.aligned``: real photos and their
    reconstructions) get ``aligned_share``, likewise; the other sources get the
    rest, half per class, split equally between the sources of that class.
    Without fair sources their share goes to the other sources; where another
    kind is missing, the remaining kinds' shares grow in proportion to fill it.
    """
    for name, share in (("fair", fair_share), ("aligned", aligned_share)):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"the {name} share must be in [0, 1], got {share}")
    if fair_share + aligned_share > 1.0:
        raise ValueError(f"the fair and aligned shares add up to more than 1 ({fair_share} + {aligned_share})")
    groups = sorted({(example.source, example.label) for example in examples})
    fair = [group for group in groups if group[0] in fair_sources]
    aligned = [group for group in groups if group[0] in aligned_sources and group not in fair]
    other = [group for group in groups if group not in fair and group not in aligned]
    shares = {"fair": fair_share, "aligned": aligned_share, "other": 1.0 - fair_share - aligned_share}
    if not fair:
        # A folder without the fair pairs (a user's own data): their share goes to the other sources.
        shares = {"fair": 0.0, "aligned": aligned_share, "other": 1.0 - aligned_share}
    kinds = {"fair": fair, "aligned": aligned, "other": other}
    present = sum(shares[kind] for kind, members in kinds.items() if members)
    if present <= 0.0:
        # Only kinds with no share are present: they are all there is.
        shares = {kind: 1.0 if members else 0.0 for kind, members in kinds.items()}
        present = sum(shares.values())
    shares = {kind: share / present if kinds[kind] else 0.0 for kind, share in shares.items()}
    weights = {group: shares["fair"] / len(fair) for group in fair}
    weights.update({group: shares["aligned"] / len(aligned) for group in aligned})
    by_label = defaultdict(list)
    for group in other:
        by_label[group[1]].append(group)
    for members in by_label.values():
        for group in members:
            weights[group] = shares["other"] / len(by_label) / len(members)
    return weights


def _loader(image_size: int, skips: SkipLog, transform):
    """A tf.data map function: path -> (image, ok); ``transform(pixels, rng) -> model input``."""
    draws = itertools.count()

    def load(path: bytes, seed: int) -> tuple[np.ndarray, bool]:
        name = path.decode()
        try:
            pixels = load_image(name).pixels
        except (ImageError, OSError) as error:
            skips.add(name, str(error))
            return np.zeros((image_size, image_size, 3), np.float32), False
        # One random stream per load, from the seed and a counter, so that
        # parallel decoding threads never share a generator.
        rng = np.random.default_rng([int(seed), next(draws)])
        return np.ascontiguousarray(transform(pixels, rng), dtype=np.float32), True

    return load


def _batches(dataset: tf.data.Dataset, load, size: int, batch_size: int, seed: int, stateful: bool):
    def load_op(path, label):
        image, ok = tf.numpy_function(load, [path, seed], [tf.float32, tf.bool], stateful=stateful)
        image.set_shape((size, size, 3))
        ok.set_shape(())
        return image, ok, label

    dataset = dataset.map(load_op, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not stateful)
    dataset = dataset.filter(lambda image, ok, label: ok)
    dataset = dataset.map(lambda image, ok, label: (image, label))
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _slices(examples: Sequence[Example]) -> tf.data.Dataset:
    paths = [str(example.path) for example in examples]
    labels = np.array([example.label for example in examples], dtype=np.int32)
    return tf.data.Dataset.from_tensor_slices((paths, labels))


def make_dataset(
    examples: Sequence[Example], image_size: int, batch_size: int, *, skips: SkipLog,
    distort: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tf.data.Dataset:
    """(images, labels) batches of full frames, in order, as they are scored; ``distort``
    (decoded pixels -> pixels, e.g. the laundering) is applied before the shared preprocessing."""
    load = _loader(
        image_size, skips, lambda pixels, rng: to_model_input(distort(pixels) if distort else pixels, image_size)
    )
    return _batches(_slices(examples), load, image_size, batch_size, seed=0, stateful=False)


def surround_pool(
    groups: Sequence[Sequence[Example]], chances: Sequence[float], image_size: int, skips: SkipLog,
    count: int = 256, seed: int = 0,
) -> list[np.ndarray]:
    """``count`` training images drawn like the batches (a group by its chance, then one of its images), at
    ``image_size``, to surround zoomed-out draws with (``training.data.augment.zoom_out``): 48 MiB at 256 px."""
    rng = np.random.default_rng(seed)
    chances = np.asarray(chances, np.float64)
    pool = []
    for index in rng.choice(len(groups), size=count, p=chances / chances.sum()):
        example = groups[index][int(rng.integers(len(groups[index])))]
        try:
            pixels = load_image(example.path).pixels
        except (ImageError, OSError) as error:
            skips.add(str(example.path), str(error))
            continue
        pool.append(np.round(to_model_input(pixels, image_size)).astype(np.uint8))
    return pool


def make_training_dataset(
    examples: Sequence[Example],
    image_size: int,
    crop_size: int,
    batch_size: int,
    *,
    skips: SkipLog,
    weights: dict[tuple[str, int], float],
    seed: int = 0,
    augment_config: AugmentConfig | None = AugmentConfig(),
) -> tf.data.Dataset:
    """An endless stream of augmented ``crop_size`` batches, drawn by source with ``weights``.

    Each image is degraded, zoomed out onto another training image and
    reframed (each by chance), brought to ``image_size`` by the shared
    preprocessing, as the server does, and cropped to ``crop_size`` without
    resampling.
    """
    if crop_size > image_size:
        raise ValueError(f"the crop ({crop_size} px) must not be larger than the image size ({image_size} px)")
    groups = defaultdict(list)
    for example in examples:
        groups[(example.source, example.label)].append(example)
    chosen = [group for group in sorted(groups) if weights.get(group, 0.0) > 0.0]
    streams = [
        _slices(groups[group]).shuffle(len(groups[group]), seed=seed + index, reshuffle_each_iteration=True).repeat()
        for index, group in enumerate(chosen)
    ]
    chances = [weights[group] for group in chosen]
    mixed = tf.data.Dataset.sample_from_datasets(streams, weights=chances, seed=seed)

    surrounds = (
        surround_pool([groups[group] for group in chosen], chances, image_size, skips, seed=seed)
        if augment_config is not None and augment_config.zoom_out_prob > 0 else []
    )

    def transform(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if augment_config is not None:
            pixels = degrade(pixels, rng, augment_config)
            if surrounds:
                pixels = zoom_out(pixels, rng, surrounds[int(rng.integers(len(surrounds)))], augment_config)
            pixels = reframe(pixels, rng, augment_config)
        return random_crop(to_model_input(pixels, image_size), crop_size, rng)

    load = _loader(crop_size, skips, transform)
    return _batches(mixed, load, crop_size, batch_size, seed=seed, stateful=True)
