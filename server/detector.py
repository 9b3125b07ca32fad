"""The model, loaded once per process, and how one upload becomes a result."""

from __future__ import annotations

import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from server import multicrop
from server.batcher import MicroBatcher
from server.tfserving import TFServing, load_metadata
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
    """Scores uploads with the local ``bundle``, or, given ``remote``, on TF Serving."""

    def __init__(self, bundle: Bundle | None, config: dict, remote: TFServing | None = None):
        if (bundle is None) == (remote is None):
            raise ValueError("give a local bundle or a remote backend, not both")
        self.bundle = bundle
        self._remote = remote
        self.metadata = bundle.metadata if bundle is not None else load_metadata(config["MODEL_PATH"])
        self._max_pixels = config["MAX_IMAGE_PIXELS"]
        self._timeout_s = config["INFERENCE_TIMEOUT_S"]
        self._multicrop = config["MULTICROP"]
        self._multicrop_min_factor = config["MULTICROP_MIN_FACTOR"]
        self._multicrop_grid = config["MULTICROP_GRID"]
        self._batcher = (
            MicroBatcher(self._forward, config["MAX_BATCH_SIZE"], config["BATCH_WINDOW_MS"], config["MAX_QUEUE"])
            if config["MICRO_BATCHING"]
            else None
        )
        if bundle is not None:
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
        if config["MODEL_BACKEND"] == "tfserving":
            return cls(None, config, TFServing(config["TFSERVING_URL"], config["TFSERVING_TIMEOUT_S"]))
        return cls(load_bundle(config["MODEL_PATH"]), config)

    @property
    def size(self) -> int:
        return self.metadata.image_size

    def healthy(self) -> bool:
        batcher_ok = self._batcher is None or self._batcher.healthy()
        return batcher_ok and (self._remote is None or self._remote.available())

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        if self._remote is not None:
            return self._remote.predict_fake(batch)
        # model.predict would build a tf.data pipeline for every call.
        return self._serve(tf.constant(batch, tf.float32)).numpy()[:, 1].astype(np.float64)

    def _predict(self, inputs: list[np.ndarray]) -> list[float]:
        if not inputs:
            return []
        if self._batcher is None:
            # The naive way, kept as the benchmark's baseline: a model.predict per request.
            predict = self._forward if self.bundle is None else self.bundle.predict_fake
            return [float(p) for p in predict(np.stack(inputs))]
        # Raises batcher.QueueFull at once when the queue is full (a 503, see server/errors.py).
        futures = self._batcher.submit_many(inputs)
        try:
            return [future.result(timeout=self._timeout_s) for future in futures]
        except FutureTimeout:
            for future in futures:
                future.cancel()  # nobody waits for them any more: no forward pass for them
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
