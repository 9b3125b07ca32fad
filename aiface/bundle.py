"""A trained model on disk: ``NAME.keras`` and its metadata ``NAME.json``.

The metadata says how to feed the model (backbone, input size,
preprocessing) and how to read it (calibration temperature, decision
threshold), so that every runtime reports the same calibrated
``probability_fake`` and label. The temperature is also folded into the
final Dense layer when it is fitted (``training.models.calibration``), so the
stored network's softmax is already calibrated; the JSON records it for
users and reports.

The metadata part (``Metadata``, ``metadata_path``, ``read_metadata``) needs
neither Keras nor TensorFlow, so that the service in TF Serving mode does not
load them; ``load_bundle`` imports Keras (and registers our layers,
``aiface.layers``) only when it loads a model, after checking that the files
exist and through ``aiface.quiet``, which keeps TensorFlow's CUDA noise off a
CPU-only machine.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aiface.quiet import quiet_tensorflow

if TYPE_CHECKING:
    import keras

# The model's two outputs, in order.
CLASS_NAMES = ("real", "fake")
PREPROCESSING = (
    "decode, EXIF orientation, 8-bit RGB (alpha over white), centred square crop, "
    "antialiased triangle resize to image_size, float32 in [0, 255] (aiface/preprocess.py)"
)


class ModelLoadError(RuntimeError):
    """A model file that is missing, unreadable or not one of ours."""


@dataclass
class Metadata:
    backbone: str
    image_size: int
    name: str = "aiface"
    version: str = "0.0.0"
    temperature: float = 1.0
    threshold: float = 0.5
    target_fpr: float | None = None
    preprocessing: str = PREPROCESSING
    class_names: tuple[str, ...] = CLASS_NAMES
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        data = dict(self.__dict__)
        data["class_names"] = list(self.class_names)
        return data

    @classmethod
    def from_json(cls, data: dict) -> Metadata:
        known = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        known["class_names"] = tuple(known.get("class_names", CLASS_NAMES))
        return cls(**known)


@dataclass
class Bundle:
    model: keras.Model
    metadata: Metadata

    def predict_fake(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Calibrated P(fake) for a (N, size, size, 3) batch of model inputs."""
        probabilities = self.model.predict(images, batch_size=batch_size, verbose=0)
        return probabilities[:, 1].astype(np.float64)

    def predictor(self) -> Callable[[np.ndarray], np.ndarray]:
        """``predict_fake`` through one traced function, as the service and ``aiface scan`` run the model.

        ``model.predict`` builds a tf.data pipeline on every call, and
        ``predict_on_batch`` retraces for each new batch size it meets, which
        costs seconds on a real backbone; this traces once for every size.
        """
        import tensorflow as tf

        size = self.metadata.image_size
        serve = tf.function(
            lambda batch: self.model(batch, training=False),
            input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)],
            autograph=False,
        )

        def predict(batch: np.ndarray) -> np.ndarray:
            return serve(np.asarray(batch, np.float32)).numpy()[:, 1].astype(np.float64)

        return predict


def metadata_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def read_metadata(meta_file: Path, missing_hint: str = "") -> Metadata:
    """The Metadata in a JSON file, or ModelLoadError saying why not."""
    if not meta_file.is_file():
        raise ModelLoadError(f"model metadata {meta_file} does not exist{missing_hint}")
    try:
        return Metadata.from_json(json.loads(meta_file.read_text()))
    except (ValueError, TypeError) as error:
        raise ModelLoadError(f"model metadata {meta_file} is unreadable: {error}") from None


def save_bundle(bundle: Bundle, path: str | Path, overwrite: bool = False) -> Path:
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"model path must end in .keras: {path}")
    if not overwrite and (path.exists() or metadata_path(path).exists()):
        raise FileExistsError(f"{path} exists; pass overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    bundle.model.save(path)
    metadata_path(path).write_text(json.dumps(bundle.metadata.to_json(), indent=2) + "\n")
    return path


def load_bundle(path: str | Path) -> Bundle:
    """Load a model and its metadata, or raise ModelLoadError saying why not."""
    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.glob("*.keras"))
        if len(candidates) != 1:
            raise ModelLoadError(f"{path} must hold exactly one .keras model, found {len(candidates)}")
        path = candidates[0]
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist")
    metadata = read_metadata(metadata_path(path), " (it is written beside the .keras file)")
    quiet_tensorflow()
    import keras

    import aiface.layers  # noqa: F401  (registers our layers before the model is deserialised)

    try:
        # safe_mode=True (the default, said out loud): a Lambda layer's pickled code is never run.
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except (OSError, ValueError, TypeError, KeyError, zipfile.BadZipFile) as error:
        raise ModelLoadError(f"model file {path} is corrupt or not a Keras model: {error}") from None
    expected = (None, metadata.image_size, metadata.image_size, 3)
    if tuple(model.input_shape) != expected or tuple(model.output_shape) != (None, 2):
        raise ModelLoadError(
            f"model {path} takes {model.input_shape} and gives {model.output_shape}; "
            f"its metadata promises {expected} -> (None, 2)"
        )
    return Bundle(model, metadata)
