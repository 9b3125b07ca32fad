"""Inference on a TensorFlow Serving endpoint instead of in this process.

With ``MODEL_BACKEND=tfserving`` the Flask service still decodes,
preprocesses, thresholds and formats every answer; only the forward pass
goes to TF Serving's REST API (``TFSERVING_URL``, e.g.
``http://tfserving:8501/v1/models/aiface``), one ``:predict`` call per
micro-batch. The model there is what ``python -m training.export_savedmodel``
writes: signature ``serving_default``, input ``image`` float32
``[None, S, S, 3]`` in [0, 255], output ``probabilities`` ``[None, 2]``.

The metadata (input size, threshold, names) come from the JSON that export
writes beside the version folders, or from a bundle's ``NAME.json``:
``MODEL_PATH`` names either (see ``load_metadata``).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from aiface.bundle import Metadata, metadata_path, read_metadata
from server.exceptions import BackendUnavailable

# Pixel values in [0, 255] sent with four decimals: a quarter of the JSON of
# full float64 digits, and 5e-5 of a grey level is far below what changes a score.
DECIMALS = 4
METADATA_FILE = "metadata.json"


def load_metadata(path: str | Path) -> Metadata:
    """Metadata from an export folder (its metadata.json), a NAME.json, or the JSON beside NAME.keras."""
    path = Path(path)
    return read_metadata(path / METADATA_FILE if path.is_dir() else metadata_path(path))


class TFServing:
    def __init__(self, url: str, timeout_s: float):
        self.url = url.rstrip("/")
        self._timeout_s = timeout_s

    def _call(self, url: str, body: bytes | None = None) -> dict:
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            detail = error.read(500).decode("utf-8", "replace")
            raise BackendUnavailable(f"TensorFlow Serving at {self.url} answered {error.code}: {detail}") from None
        except (OSError, ValueError) as error:  # refused, timed out, reset, or not JSON
            raise BackendUnavailable(f"TensorFlow Serving at {self.url} is unreachable: {error}") from None

    def predict_fake(self, batch: np.ndarray) -> np.ndarray:
        """P(fake) for a (N, S, S, 3) batch of model inputs, computed by TF Serving."""
        body = json.dumps(
            {"signature_name": "serving_default", "instances": np.round(batch.astype(np.float64), DECIMALS).tolist()}
        ).encode()
        answer = self._call(f"{self.url}:predict", body)
        try:
            rows = [row["probabilities"] if isinstance(row, dict) else row for row in answer["predictions"]]
            probabilities = np.asarray(rows, dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            raise BackendUnavailable(f"TensorFlow Serving at {self.url} answered without predictions") from None
        if probabilities.shape != (len(batch), 2):
            raise BackendUnavailable(
                f"TensorFlow Serving at {self.url} answered shape {probabilities.shape}, expected ({len(batch)}, 2)"
            )
        return probabilities[:, 1]

    def available(self) -> bool:
        """Whether the model's status endpoint reports a version AVAILABLE."""
        try:
            status = self._call(self.url)
        except BackendUnavailable:
            return False
        return any(version.get("state") == "AVAILABLE" for version in status.get("model_version_status", []))
