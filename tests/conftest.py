"""Shared fixtures: tiny models and tiny images, made on the spot."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest
from PIL import Image

from aiface.bundle import Bundle, Metadata, save_bundle
from server import create_app
from training.backbones import build_model

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


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A saved, untrained tiny-backbone model with metadata: fast to load and run."""
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    # Fixed weights: tests that compare two images' scores must not depend on a lucky draw.
    keras.utils.set_random_seed(0)
    model = build_model("tiny", TINY_SIZE)
    metadata = Metadata(backbone="tiny", image_size=TINY_SIZE, name="tiny-test", version="0.0.1")
    save_bundle(Bundle(model, metadata), path)
    return path


@pytest.fixture(scope="module")
def app(tiny_model_path):
    """The service on the tiny model, with default settings."""
    return create_app({"MODEL_PATH": str(tiny_model_path)})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A 140k-layout folder of small synthetic images, a few per class and split."""
    root = tmp_path_factory.mktemp("data")
    seed = 0
    for split, count in (("train", 12), ("valid", 6), ("test", 6)):
        for label in ("real", "fake"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(count):
                seed += 1
                source = "synth_a" if index % 2 else "synth_b"
                pixels = face_like(seed, fake=label == "fake")
                (folder / f"{source}_{seed:04x}.png").write_bytes(encode(pixels))
    return root


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
