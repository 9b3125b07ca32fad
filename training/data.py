"""Streaming labelled images into training batches with tf.data.

Images are decoded one by one by ``aiface.preprocess`` (the same code the
server runs) inside the pipeline, never all loaded at once. A file that cannot
be read is dropped from the batch and recorded in a ``SkipLog``; training goes
on.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections import Counter
from typing import Sequence

import numpy as np
import tensorflow as tf

from aiface.preprocess import ImageError, load_image, to_model_input
from training.augment import AugmentConfig, augment
from training.layout import Example


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


def class_weights(examples: Sequence[Example]) -> dict[int, float]:
    """Weights that give both classes the same total weight in the loss."""
    counts = Counter(example.label for example in examples)
    return {label: len(examples) / (len(counts) * count) for label, count in counts.items()}


def make_dataset(
    examples: Sequence[Example],
    image_size: int,
    batch_size: int,
    *,
    training: bool,
    skips: SkipLog,
    seed: int = 0,
    augment_config: AugmentConfig | None = AugmentConfig(),
) -> tf.data.Dataset:
    """(images, labels) batches; shuffled and augmented when ``training``."""
    paths = [str(example.path) for example in examples]
    labels = np.array([example.label for example in examples], dtype=np.int32)
    # One random stream per image load, derived from the seed and a counter, so
    # parallel decoding threads never share a generator.
    draws = itertools.count()
    seeds = np.random.SeedSequence(seed)

    def load(path: bytes) -> tuple[np.ndarray, bool]:
        name = path.decode()
        try:
            pixels = load_image(name).pixels
        except (ImageError, OSError) as error:
            skips.add(name, str(error))
            return np.zeros((image_size, image_size, 3), np.float32), False
        if training and augment_config is not None:
            rng = np.random.default_rng([seeds.entropy, next(draws)])
            pixels = augment(pixels, rng, augment_config)
        return to_model_input(pixels, image_size), True

    def load_op(path, label):
        image, ok = tf.numpy_function(load, [path], [tf.float32, tf.bool], stateful=training)
        image.set_shape((image_size, image_size, 3))
        ok.set_shape(())
        return image, ok, label

    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    if training:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(load_op, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    dataset = dataset.filter(lambda image, ok, label: ok)
    dataset = dataset.map(lambda image, ok, label: (image, label))
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
