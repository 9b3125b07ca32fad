"""The model, loaded once per process, and how one upload becomes a result."""

from __future__ import annotations

import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from server import multicrop
from server.batcher import MicroBatcher
from training.bundle import Bundle, load_bundle
from training.preprocess import ImageError, load_image, to_model_input


class InferenceTimeout(RuntimeError):
    """The model did not answer in time (the service is overloaded)."""


@dataclass(frozen=True)
class Detection:
    probability_fake: float
    width: int
    height: int
    elapsed_ms: float


class Detector:
    def __init__(self, bundle: Bundle, config: dict):
        self.bundle = bundle
        self.metadata = bundle.metadata
        self._max_pixels = config["MAX_IMAGE_PIXELS"]
        self._timeout_s = config["INFERENCE_TIMEOUT_S"]
        self._multicrop = config["MULTICROP"]
        self._multicrop_min_factor = config["MULTICROP_MIN_FACTOR"]
        self._multicrop_grid = config["MULTICROP_GRID"]
        self._batcher = (
            MicroBatcher(self._forward, config["MAX_BATCH_SIZE"], config["BATCH_WINDOW_MS"])
            if config["MICRO_BATCHING"]
            else None
        )
        # One trace for every batch size: model.predict_on_batch retraces for
        # each new batch size it meets, which costs seconds on a real backbone.
        self._serve = tf.function(
            lambda batch: bundle.model(batch, training=False),
            input_signature=[tf.TensorSpec((None, self.size, self.size, 3), tf.float32)],
            autograph=False,
        )
        # Traces it now, so that the first request is not the slow one.
        self._forward(np.zeros((1, self.size, self.size, 3), np.float32))

    @classmethod
    def from_config(cls, config: dict) -> "Detector":
        return cls(load_bundle(config["MODEL_PATH"]), config)

    @property
    def size(self) -> int:
        return self.metadata.image_size

    def healthy(self) -> bool:
        return self._batcher is None or self._batcher.healthy()

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        # model.predict would build a tf.data pipeline for every call.
        return self._serve(tf.constant(batch, tf.float32)).numpy()[:, 1].astype(np.float64)

    def _predict(self, inputs: list[np.ndarray]) -> list[float]:
        if not inputs:
            return []
        if self._batcher is None:
            # The naive way, kept as the benchmark's baseline: a model.predict per request.
            return [float(p) for p in self.bundle.predict_fake(np.stack(inputs))]
        futures = [self._batcher.submit(model_input) for model_input in inputs]
        try:
            return [future.result(timeout=self._timeout_s) for future in futures]
        except FutureTimeout:
            raise InferenceTimeout(f"the model did not answer within {self._timeout_s:g} s") from None

    def _inputs(self, pixels: np.ndarray) -> list[np.ndarray]:
        if self._multicrop and multicrop.is_large(pixels, self.size, self._multicrop_min_factor):
            return multicrop.model_inputs(pixels, self.size, self._multicrop_grid)
        return [to_model_input(pixels, self.size)]

    def _combine(self, probabilities: list[float]) -> float:
        return multicrop.combine(probabilities) if len(probabilities) > 1 else probabilities[0]

    def detect(self, data: bytes) -> Detection:
        """Score encoded image bytes; raises training.preprocess.ImageError for bad input."""
        result = self.detect_many([data])[0]
        if isinstance(result, ImageError):
            raise result
        return result

    def detect_many(self, uploads: list[bytes]) -> list[Detection | ImageError]:
        """Score several uploads in one go; a bad one yields its ImageError in its place."""
        start = time.perf_counter()
        prepared: list[tuple[np.ndarray, list[np.ndarray]] | ImageError] = []
        for data in uploads:
            try:
                pixels = load_image(data, max_pixels=self._max_pixels).pixels
            except ImageError as error:
                prepared.append(error)
                continue
            prepared.append((pixels, self._inputs(pixels)))
        # All inputs go to the model together, so a batch upload is one forward pass.
        probabilities = iter(
            self._predict([x for item in prepared if not isinstance(item, ImageError) for x in item[1]])
        )
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        results: list[Detection | ImageError] = []
        for item in prepared:
            if isinstance(item, ImageError):
                results.append(item)
                continue
            pixels, inputs = item
            results.append(
                Detection(
                    probability_fake=self._combine([next(probabilities) for _ in inputs]),
                    width=int(pixels.shape[1]),
                    height=int(pixels.shape[0]),
                    elapsed_ms=elapsed_ms,
                )
            )
        return results
