"""What several test files share besides fixtures: small images made on the spot, scenes with a real face,
process helpers, driving the built extension.

Test files import these (``from helpers import encode, face_like``); fixtures
live in ``conftest.py``; test files never import from each other. Nothing
here imports Keras or TensorFlow at import time.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aiface.faces import Box

TINY_SIZE = 32
# The most the shipped conversion's quantization may cost in probability, TF.js against Keras, in both browsers:
# aiface 4.0.0 (--quantize mixed) measured 0.041 at most on 300 test images, no label changed (3.0.0: 0.013);
# its diffusion head is steep, and the two kernels kept in one byte feed the features it reads
# (benchmarks/quantization_cost.py, benchmarks/README.md).
QUANTIZED_TOLERANCE = 0.05
ROOT = Path(__file__).resolve().parent.parent
EXTENSION = ROOT / "extension"
SHIPPED_KERAS = ROOT / "server" / "model" / "aiface.keras"
SHARED_DATA = ROOT.parent / "shared" / "data"

# tests/data/astronaut_face.jpg: a 170 x 195 crop of scikit-image's data.astronaut() (Eileen Collins, NASA:
# public domain); her face spans x 40-125, y 42-153 in it.
FACE = np.asarray(Image.open(ROOT / "tests" / "data" / "astronaut_face.jpg").convert("RGB"))
FACE_IN_CROP = Box(40, 42, 85, 111)
PASTED_AT = (400, 200)  # x, y of the crop in the scene
EXPECTED_FACE = Box(
    PASTED_AT[0] + FACE_IN_CROP.x, PASTED_AT[1] + FACE_IN_CROP.y, FACE_IN_CROP.width, FACE_IN_CROP.height
)


def encode(pixels: np.ndarray, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=format, **options)
    return buffer.getvalue()


def face_like(seed: int, size: int = 48, fake: bool = False) -> np.ndarray:
    """A random smooth image; 'fake' ones get a bright checker pattern a tiny model learns."""
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, size=(size // 8, size // 8, 3), dtype=np.uint8)
    pixels = np.asarray(Image.fromarray(base).resize((size, size), Image.BILINEAR))
    if fake:
        checker = ((np.indices((size, size)).sum(axis=0) % 2) * 60).astype(np.int16)
        pixels = np.clip(pixels.astype(np.int16) + checker[:, :, None], 0, 255).astype(np.uint8)
    return pixels


def photo_like(seed: int, width: int = 512, height: int = 512) -> np.ndarray:
    """A smooth random picture with a fine grain, as a generated image's texture is (for watermark tests)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 216, size=(height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(base).resize((width, height), Image.BICUBIC), dtype=np.int16)
    grain = rng.normal(0, 6, size=(height, width, 1)).round().astype(np.int16)
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def _dwt_dct_embedder():
    """The ``invisible-watermark`` package's own dwtDct embedder (imwatermark/maxDct.py).

    Loaded from its file: the package's ``__init__`` imports PyTorch (for
    another method, rivaGan), which the dev install leaves out (.ci/setup).
    Raises ModuleNotFoundError when the package is not installed.
    """
    import importlib.util

    spec = importlib.util.find_spec("imwatermark")
    if spec is None:
        raise ModuleNotFoundError("invisible-watermark is not installed (bash .ci/setup --test installs it)")
    path = Path(spec.submodule_search_locations[0]) / "maxDct.py"
    module_spec = importlib.util.spec_from_file_location("imwatermark_maxdct", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.EmbedMaxDct


# How each generator's pipeline hands its image to the package:
# (name, the mark's name in aiface.watermark.MARKS, float pixels, red and blue swapped).
# SDXL and FLUX.1 mark float pixels and round them to 8 bits afterwards (diffusers
# gave SDXL's as RGB, where the package expects BGR, before 0.27); the SD 1/2
# scripts mark the 8-bit image itself.
GENERATOR_PIPELINES = [
    ("SDXL", "Stable Diffusion XL", True, False),
    ("SDXL, diffusers < 0.27", "Stable Diffusion XL", True, True),
    ("FLUX.1", "FLUX.1", True, False),
    ("SD 1", "Stable Diffusion 1", False, False),
    ("SD 2", "Stable Diffusion 2", False, False),
]


def embed_watermark(rgb: np.ndarray, bits: str, float_pixels: bool, swapped: bool = False) -> np.ndarray:
    """``rgb`` marked with ``bits`` ('0'/'1' text) by the package, as a pipeline of GENERATOR_PIPELINES marks it."""
    embedder = _dwt_dct_embedder()([int(bit) for bit in bits], wmLen=len(bits))
    order = slice(None) if swapped else slice(None, None, -1)
    image = np.ascontiguousarray(rgb[:, :, order], dtype=np.float32 if float_pixels else np.uint8)
    marked = embedder.encode(image)[:, :, order]
    return np.clip(np.round(marked), 0, 255).astype(np.uint8) if float_pixels else np.ascontiguousarray(marked)


def package_decode(rgb: np.ndarray, length: int, domain: str) -> str:
    """The bits the package's dwtDct decoder reads from 8-bit RGB in a domain of aiface.watermark, '0'/'1' text."""
    decoder = _dwt_dct_embedder()([], wmLen=length)
    order = slice(None) if domain == "float-swapped" else slice(None, None, -1)
    image = np.ascontiguousarray(rgb[:, :, order], dtype=np.uint8 if domain == "8-bit" else np.float32)
    return "".join("1" if bit else "0" for bit in decoder.decode(image))


class HeldModel:
    """A stand-in forward pass whose first call blocks until ``release`` is set,
    so that requests pile up behind it deterministically, without sleeps.

    Answers ``answer`` for every input, or each input's sum when it is None.
    """

    def __init__(self, answer: float | None = None):
        self.answer = answer
        self.batch_sizes: list[int] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batch_sizes.append(len(batch))
        if len(self.batch_sizes) == 1:
            self.started.set()
            assert self.release.wait(timeout=30)
        if self.answer is None:
            return batch.reshape(len(batch), -1).sum(axis=1)
        return np.full(len(batch), self.answer)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, what: str, process: subprocess.Popen, deadline_s: float = 60.0):
    """Polls ``condition`` until it returns a truthy value, the deadline passes or ``process`` exits."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            result = condition()
        except OSError:
            result = None
        if result:
            return result
        try:
            process.wait(timeout=0.2)  # paces the polling and notices an early exit
        except subprocess.TimeoutExpired:
            continue
        output = process.stdout.read() if process.stdout else ""
        raise AssertionError(f"the process exited with {process.returncode} while waiting for {what}:\n{output}")
    raise AssertionError(f"no {what} within {deadline_s} s")


REPO = Path(__file__).resolve().parents[1]


def request_json(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, decoded JSON body or None) of one request to 127.0.0.1:``port``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def healthy(port: int) -> bool:
    return request_json(port, "GET", "/healthz")[0] == 200


def stop(process: subprocess.Popen) -> None:
    """Terminate a server and wait for it; killed if it does not stop within 30 s."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def gunicorn_service(model_path, log_path, port: int, threads: int, deadline_s: float = 60.0, **settings):
    """``gunicorn -c server/gunicorn_conf.py`` with one worker serving ``model_path`` on 127.0.0.1:``port``.

    ``settings`` go to its environment; yields the master process once
    ``/healthz`` answers 200 (within ``deadline_s``), and stops it afterwards.
    """
    env = {**os.environ, "MODEL_PATH": str(model_path), "TF_CPP_MIN_LOG_LEVEL": "3",
           **{key: str(value) for key, value in settings.items()}}
    command = [sys.executable, "-m", "gunicorn", "-c", "server/gunicorn_conf.py", "--workers", "1",
               "--threads", str(threads), "--bind", f"127.0.0.1:{port}", "server:create_app()"]
    with open(log_path, "w") as output:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: healthy(port), "healthy server", process, deadline_s)
        yield process
    finally:
        stop(process)


# --- scenes with a real face ------------------------------------------------------------------------------------


def scene() -> np.ndarray:
    """A 640 x 480 colour gradient with the astronaut's face pasted at PASTED_AT."""
    y, x = np.mgrid[0:480, 0:640]
    pixels = np.stack([x * 255 / 640, y * 255 / 480, np.full(x.shape, 128)], axis=-1).astype(np.uint8)
    left, top = PASTED_AT
    pixels[top : top + FACE.shape[0], left : left + FACE.shape[1]] = FACE
    return pixels


def two_faces_scene() -> np.ndarray:
    """800 x 500: the astronaut at (60, 80), and mirrored at 1.5 times her size at (470, 150)."""
    y, x = np.mgrid[0:500, 0:800]
    pixels = np.stack([x * 255 / 800, np.full(x.shape, 90), y * 255 / 500], axis=-1).astype(np.uint8)
    pixels[80 : 80 + FACE.shape[0], 60 : 60 + FACE.shape[1]] = FACE
    mirrored = Image.fromarray(FACE[:, ::-1]).resize((255, 292), Image.BICUBIC)
    pixels[150 : 150 + 292, 470 : 470 + 255] = np.asarray(mirrored)
    return pixels


def face_filling() -> np.ndarray:
    """256 x 320, the face filling the frame: the first pass finds nothing, the grey-border pass finds it."""
    return np.asarray(Image.fromarray(FACE[40:160, 35:130]).resize((256, 320), Image.BICUBIC))


def trained_tiny_model(size: int):
    """A few epochs on real and checkered "fake" images: probabilities far apart, BatchNorm statistics non-trivial."""
    import keras

    from training.models.backbones import build_model

    keras.utils.set_random_seed(0)  # the same weights in every run
    model = build_model("tiny", size)
    images = np.stack([face_like(seed, size=size, fake=seed % 2 == 1) for seed in range(100, 132)]).astype(np.float32)
    labels = np.arange(100, 132) % 2
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=8, batch_size=8, verbose=0)
    return model


# --- the built extension in headless Chromium (the ``browser`` fixture is in conftest.py) -----------------------


def tool(name: str, fallback: str | None = None) -> str:
    """The path of a command, or the test skipped when it is not installed."""
    import shutil

    found = shutil.which(name) or (fallback if fallback and Path(fallback).exists() else None)
    if found is None:
        pytest.skip(f"{name} is not installed; `bash .ci/setup --test` installs it")
    return found


def build_extension() -> None:
    """extension/dist/chrome and dist/firefox built from the sources as they are (about a second), with the
    npm packages installed first, as .ci/setup does: again when the lock file changed since the last install."""
    installed = EXTENSION / "node_modules" / ".package-lock.json"
    if not installed.is_file() or (EXTENSION / "package-lock.json").stat().st_mtime > installed.stat().st_mtime:
        subprocess.run([tool("npm"), "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=EXTENSION, check=True)
    subprocess.run([tool("npm"), "run", "build", "--silent"], cwd=EXTENSION, check=True)


def node_json(script: str) -> dict:
    """Run an ES module's source in node and parse what it writes to stdout (skipped without node)."""
    result = subprocess.run([tool("node"), "--no-warnings", "--input-type=module", "-e", script],
                            capture_output=True, text=True, check=True, timeout=60)
    return json.loads(result.stdout)


def drive(browser, site: Path, checks: list[dict], **options) -> dict:
    """Check images on a local page through the Chromium build (extension/test/drive.mjs); its JSON answer."""
    node, chromium = browser
    request = {"extensionDir": str(EXTENSION / "dist" / "chrome"), "chromium": chromium, "siteDir": str(site),
               "checks": checks, **options}
    result = subprocess.run(
        [node, str(EXTENSION / "test" / "drive.mjs"), json.dumps(request)],
        cwd=EXTENSION, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
