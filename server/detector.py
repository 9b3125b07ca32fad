"""The model, loaded once per process, and what the service adds to the inference path.

The path itself (decode, faces, crops, model, detection) is ``aiface.pipeline``;
here are what only the service needs: the pixel budget while an upload is
decoded, the micro-batcher or TF Serving as the model, the timeout, and
Grad-CAM explanations.
"""

from __future__ import annotations

from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import numpy as np

from aiface.bundle import Bundle, load_bundle
from aiface.explain import GradCam, render_png
from aiface.faces import Box, default_finder
from aiface.pipeline import Detection, detect
from aiface.preprocess import ImageError
from server.admission import PixelBudget
from server.batcher import MicroBatcher
from server.exceptions import InferenceTimeout
from server.tfserving import TFServing, load_metadata

# Largest side of an explanation PNG: the map has 7 x 7 cells, more pixels add
# nothing but bytes; the client stretches it over its box.
EXPLANATION_MAX_SIDE = 512


@dataclass(frozen=True)
class Explanation:
    png: bytes  # RGBA heat-map, width x height, to be stretched over ``box``
    box: Box  # the scored region of the image it covers
    width: int
    height: int


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
        # Decoding and preparing an image costs memory in proportion to its pixels.
        self._pixel_budget = PixelBudget(config["MAX_PIXELS_IN_FLIGHT"])
        self._faces = default_finder() if config["FACE_DETECTION"] else None
        self._gradcam = GradCam(bundle.model) if bundle is not None else None
        self._batcher = (
            MicroBatcher(self._forward, config["MAX_BATCH_SIZE"], config["BATCH_WINDOW_MS"], config["MAX_QUEUE"])
            if config["MICRO_BATCHING"]
            else None
        )
        if bundle is not None:
            # Only a model run here needs TensorFlow (not MODEL_BACKEND=tfserving).
            self._local = bundle.predictor()
            # Traces it now, so that the first request is not the slow one.
            self._forward(np.zeros((1, self.size, self.size, 3), np.float32))

    @classmethod
    def from_config(cls, config: dict) -> Detector:
        if config["MODEL_BACKEND"] == "tfserving":
            return cls(None, config, TFServing(config["TFSERVING_URL"], config["TFSERVING_TIMEOUT_S"]))
        return cls(load_bundle(config["MODEL_PATH"]), config)

    @property
    def size(self) -> int:
        return self.metadata.image_size

    def health_problem(self) -> str | None:
        """What keeps this detector from answering, or None when it can."""
        if self._batcher is not None and not self._batcher.healthy():
            return "the inference thread has stopped"
        if self._remote is not None and not self._remote.available():
            return "TensorFlow Serving has no version of the model available"
        return None

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        if self._remote is not None:
            return self._remote.predict_fake(batch)
        return self._local(batch)

    def _predict(self, inputs: np.ndarray) -> list[float]:
        """One upload's model inputs, (N, size, size, 3), to their probabilities."""
        if self._batcher is None:
            # The naive way, kept as the benchmark's baseline: a model.predict per request.
            predict = self._forward if self.bundle is None else self.bundle.predict_fake
            return [float(p) for p in predict(inputs)]
        # Raises QueueFull at once when the queue is full (a 503, see server/errors.py).
        futures = self._batcher.submit_many(list(inputs))
        try:
            return [future.result(timeout=self._timeout_s) for future in futures]
        except FutureTimeout:
            for future in futures:
                future.cancel()  # nobody waits for them any more: no forward pass for them
            raise InferenceTimeout(f"the model did not answer within {self._timeout_s:g} s") from None

    @property
    def can_explain(self) -> bool:
        return self._gradcam is not None

    def explain(self, detection: Detection) -> Explanation:
        """Grad-CAM of the region that decided ``detection`` (aiface/explain.py)."""
        if self._gradcam is None or detection.region_input is None:
            raise ValueError("explanations need the model in this process")
        fake = detection.probability_fake >= self.metadata.threshold
        heatmap = self._gradcam.heatmap(detection.region_input, fake)
        box = detection.region
        scale = min(1.0, EXPLANATION_MAX_SIDE / max(box.width, box.height))
        width, height = max(1, round(box.width * scale)), max(1, round(box.height * scale))
        return Explanation(render_png(heatmap, width, height), box, width, height)

    def detect(self, data: bytes) -> Detection:
        """Score encoded image bytes; raises aiface.preprocess.ImageError for bad input."""
        result = self.detect_many([data])[0]
        if isinstance(result, ImageError):
            raise result
        return result

    def detect_many(self, uploads: list[bytes]) -> list[Detection | ImageError]:
        """Score several uploads one after the other; a bad one yields its ImageError in its place.

        One at a time, so that a batch never holds more than one decoded image;
        the deciding region's model input (for ``explain``) is kept for a single upload only.
        """
        keep_input = len(uploads) == 1
        results: list[Detection | ImageError] = []
        for data in uploads:
            try:
                results.append(self._detect_one(data, keep_input))
            except ImageError as error:
                results.append(error)
        return results

    def hold_pixels(self, pixels: int):
        """A context that holds room for ``pixels`` decoded pixels in the service's budget, waiting for it."""
        return self._pixel_budget.hold(pixels, self._timeout_s)

    def _detect_one(self, data: bytes, keep_input: bool) -> Detection:
        # Decoding waits for room in the pixel budget; only the model inputs wait for the model.
        return detect(data, self._faces, self._predict, self.size, self._max_pixels, keep_input,
                      hold=self.hold_pixels)
