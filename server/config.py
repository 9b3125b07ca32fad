"""The service's settings: defaults, then an instance file, then the environment.

Every setting can be given in the environment under its plain name
(``MODEL_PATH``) or with the ``AIFACE_`` prefix (``AIFACE_MODEL_PATH``); the
prefixed name wins, so a deployment can override a plain variable that some
other tool also reads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping

ENV_PREFIX = "AIFACE_"

DEFAULTS = {
    # The bundled model; a NAME.json with its metadata lies beside it.
    "MODEL_PATH": str(Path(__file__).parent / "model" / "aiface.keras"),
    # Bytes in one request body; a phone photo is a few MB.
    "MAX_CONTENT_LENGTH": 20 * 1024 * 1024,
    # Decoded pixels in one image: refuses decompression bombs before decoding.
    "MAX_IMAGE_PIXELS": 50_000_000,
    # Origins allowed by CORS, e.g. chrome-extension://<id>; none by default.
    "ALLOWED_ORIGINS": [],
    "MAX_BATCH_IMAGES": 16,
    # Micro-batching: requests arriving within the window share one forward pass.
    "MICRO_BATCHING": True,
    "MAX_BATCH_SIZE": 16,
    "BATCH_WINDOW_MS": 2.0,
    # Images waiting for the model in one process; past that a request gets
    # an immediate 503 with Retry-After instead of an ever longer wait.
    "MAX_QUEUE": 32,
    # Detection requests handled at once in one process (decoding, face
    # finding and inference together); the next one gets an immediate 503.
    "MAX_IN_FLIGHT": 32,
    # A request whose inference has not finished by then gets a 503.
    "INFERENCE_TIMEOUT_S": 30.0,
    # Find faces and score each face's crop (aiface/faces.py); the whole
    # image is scored only when no face is found.
    "FACE_DETECTION": True,
    # "local" runs the model in this process; "tfserving" sends each
    # micro-batch to TensorFlow Serving's REST API at TFSERVING_URL.
    "MODEL_BACKEND": "local",
    "TFSERVING_URL": "",
    "TFSERVING_TIMEOUT_S": 10.0,
}
BACKENDS = ("local", "tfserving")


def _as_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _as_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


PARSERS: dict[str, Callable[[str], object]] = {
    "MODEL_PATH": str,
    "MAX_CONTENT_LENGTH": int,
    "MAX_IMAGE_PIXELS": int,
    "ALLOWED_ORIGINS": _as_list,
    "MAX_BATCH_IMAGES": int,
    "MICRO_BATCHING": _as_bool,
    "MAX_BATCH_SIZE": int,
    "BATCH_WINDOW_MS": float,
    "MAX_QUEUE": int,
    "MAX_IN_FLIGHT": int,
    "INFERENCE_TIMEOUT_S": float,
    "FACE_DETECTION": _as_bool,
    "MODEL_BACKEND": str,
    "TFSERVING_URL": str,
    "TFSERVING_TIMEOUT_S": float,
}


class ConfigError(ValueError):
    """A setting whose value cannot be used."""


def from_environment(environ: Mapping[str, str] = os.environ) -> dict:
    """Settings named in the environment, parsed to their types."""
    settings = {}
    for key, parse in PARSERS.items():
        for name in (key, ENV_PREFIX + key):
            if name in environ:
                try:
                    settings[key] = parse(environ[name])
                except ValueError as error:
                    raise ConfigError(f"environment variable {name}: {error}") from None
    return settings


def normalise(config: dict) -> None:
    """Accept a comma-separated string where a list of origins is expected; refuse unusable settings."""
    origins = config.get("ALLOWED_ORIGINS") or []
    config["ALLOWED_ORIGINS"] = _as_list(origins) if isinstance(origins, str) else list(origins)
    if config["MODEL_BACKEND"] not in BACKENDS:
        raise ConfigError(f"MODEL_BACKEND is {config['MODEL_BACKEND']!r}; choose one of: {', '.join(BACKENDS)}")
    if config["MODEL_BACKEND"] == "tfserving" and not config["TFSERVING_URL"].startswith(("http://", "https://")):
        raise ConfigError(
            "MODEL_BACKEND=tfserving needs TFSERVING_URL, the model's REST address, "
            "e.g. http://tfserving:8501/v1/models/aiface"
        )
    for key in ("MAX_QUEUE", "MAX_IN_FLIGHT"):
        if config[key] < 1:
            raise ConfigError(f"{key} is {config[key]}; it must be at least 1")
