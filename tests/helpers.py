"""What several test files share besides fixtures: small images made on the spot, process helpers.

Test files import these (``from helpers import encode, face_like``); fixtures
live in ``conftest.py``. Nothing here imports Keras or TensorFlow.
"""

from __future__ import annotations

import io
import socket
import subprocess
import threading
import time

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
