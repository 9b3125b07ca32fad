"""What several test files share besides fixtures: small images made on the spot, process helpers.

Test files import these (``from helpers import encode, face_like``); fixtures
live in ``conftest.py``. Nothing here imports Keras or TensorFlow.
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
from PIL import Image

TINY_SIZE = 32


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
