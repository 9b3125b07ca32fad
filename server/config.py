"""The service's settings: defaults, then an instance file, then the environment.

Every setting can be given in the environment under its plain name
(``MODEL_PATH``) or with the ``AIFACE_`` prefix (``AIFACE_MODEL_PATH``); the
prefixed name wins, so a deployment can override a plain variable that some
other tool also reads.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from aiface.preprocess import DEFAULT_MAX_BYTES, DEFAULT_MAX_IMAGE_PIXELS
from aiface.provenance import TrustAnchorError, load_trust_anchors
from server.keys import KeysFileError, read_digests

ENV_PREFIX = "AIFACE_"

DEFAULTS = {
    # The bundled model; a NAME.json with its metadata lies beside it.
    "MODEL_PATH": str(Path(__file__).parent / "model" / "aiface.keras"),
    # Bytes in one request body; a phone photo is a few MB.
    "MAX_CONTENT_LENGTH": DEFAULT_MAX_BYTES,
    # Decoded pixels in one image: refuses decompression bombs before decoding.
    "MAX_IMAGE_PIXELS": DEFAULT_MAX_IMAGE_PIXELS,
    # Pixels of the images being decoded and prepared at once in one process
    # (a decoded pixel costs about 4 bytes while decoding): an image that does
    # not fit waits for room, at most INFERENCE_TIMEOUT_S; one image alone
    # always fits.
    "MAX_PIXELS_IN_FLIGHT": 100_000_000,
    # A request's whole body must have arrived within this many seconds of the
    # request reaching the app (under gunicorn with server/gunicorn_conf.py,
    # of its first byte, headers included), however steadily it trickles in.
    "REQUEST_DEADLINE_S": 30.0,
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
    # PEM trust anchors (a file, or a folder of *.pem / *.crt files) for C2PA
    # signers: a capture signed by one is shown as trusted. None by default, so
    # no signature counts as trusted (aiface/provenance.py).
    "TRUST_ANCHORS": "",
    # A file of the API keys' SHA-256 hex digests, one per line (server/keys.py):
    # set, every /v1/ request needs "Authorization: Bearer <key>". Unset, anyone
    # who reaches the service may use it.
    "API_KEYS_FILE": "",
    # Requests one key may make a minute, in each process (429 past that).
    "API_KEY_RATE_PER_MINUTE": 120.0,
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
    "MAX_PIXELS_IN_FLIGHT": int,
    "REQUEST_DEADLINE_S": float,
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
    "TRUST_ANCHORS": str,
    "API_KEYS_FILE": str,
    "API_KEY_RATE_PER_MINUTE": float,
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


# (lowest, highest) allowed for each number; a value outside, NaN or of
# another type stops start-up with a line naming the setting.
RANGES: dict[str, tuple[float, float]] = {
    "MAX_CONTENT_LENGTH": (1, 1 << 30),
    "MAX_IMAGE_PIXELS": (32 * 32, 80_000_000),  # aiface.preprocess's MIN_SIDE squared to its MAX_PIXELS
    "MAX_PIXELS_IN_FLIGHT": (32 * 32, 10_000_000_000),
    "REQUEST_DEADLINE_S": (0.1, 3600.0),
    "MAX_BATCH_IMAGES": (1, 1000),
    "MAX_BATCH_SIZE": (1, 1024),
    "BATCH_WINDOW_MS": (0.0, 1000.0),
    "MAX_QUEUE": (1, 100_000),
    "MAX_IN_FLIGHT": (1, 100_000),
    "INFERENCE_TIMEOUT_S": (0.001, 3600.0),
    "TFSERVING_TIMEOUT_S": (0.001, 3600.0),
    "API_KEY_RATE_PER_MINUTE": (1.0, 1_000_000.0),
}
BOOLEANS = ("MICRO_BATCHING", "FACE_DETECTION")
# scheme://host[:port] with nothing after it: CORS compares origins exactly.
ORIGIN = re.compile(r"^(https?|chrome-extension|moz-extension|safari-web-extension)://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


def _check_number(key: str, value: object) -> None:
    lowest, highest = RANGES[key]
    integer = isinstance(lowest, int) and isinstance(highest, int)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ConfigError(f"{key} is {value!r}; it must be {'a whole number' if integer else 'a number'}")
    if not math.isfinite(value) or not lowest <= value <= highest:
        raise ConfigError(f"{key} is {value!r}; it must be between {lowest:g} and {highest:g}")


def _check_origin(origin: object) -> None:
    if not isinstance(origin, str) or not ORIGIN.match(origin):
        raise ConfigError(
            f"ALLOWED_ORIGINS holds {origin!r}; list exact origins such as "
            f"chrome-extension://<extension id> or https://app.example.com (no '*', paths or wildcards)"
        )


def normalise(config: dict) -> None:
    """Accept a comma-separated string where a list of origins is expected; refuse unusable settings."""
    origins = config.get("ALLOWED_ORIGINS") or []
    config["ALLOWED_ORIGINS"] = _as_list(origins) if isinstance(origins, str) else list(origins)
    for origin in config["ALLOWED_ORIGINS"]:
        _check_origin(origin)
    for key in RANGES:
        _check_number(key, config[key])
    for key in BOOLEANS:
        if not isinstance(config[key], bool):
            raise ConfigError(f"{key} is {config[key]!r}; it must be true or false (1 or 0 in the environment)")
    if not isinstance(config["MODEL_PATH"], (str, os.PathLike)) or not str(config["MODEL_PATH"]):
        raise ConfigError("MODEL_PATH is empty; name a model saved by the training package")
    if config["MODEL_BACKEND"] not in BACKENDS:
        raise ConfigError(f"MODEL_BACKEND is {config['MODEL_BACKEND']!r}; choose one of: {', '.join(BACKENDS)}")
    try:
        load_trust_anchors(config["TRUST_ANCHORS"])
    except TrustAnchorError as error:
        raise ConfigError(f"TRUST_ANCHORS: {error}") from None
    if config["API_KEYS_FILE"]:
        try:
            listed = read_digests(config["API_KEYS_FILE"])
        except KeysFileError as error:
            raise ConfigError(f"API_KEYS_FILE: {error}") from None
        if not listed:
            raise ConfigError(f"API_KEYS_FILE: {config['API_KEYS_FILE']} lists no key; nobody could use the service")
    if config["MODEL_BACKEND"] == "tfserving" and not str(config["TFSERVING_URL"]).startswith(("http://", "https://")):
        raise ConfigError(
            "MODEL_BACKEND=tfserving needs TFSERVING_URL, the model's REST address, "
            "e.g. http://tfserving:8501/v1/models/aiface"
        )
