"""Shared fixtures: tiny models and tiny images, made on the spot.

Keras, TensorFlow and the service are imported inside the fixtures that need
them, so that tests of plain numpy code do not pay for loading them. Helpers
that test files call directly are in ``helpers.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

from helpers import TINY_SIZE, build_extension, encode, face_like, tool


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A saved, untrained tiny-backbone model with metadata: fast to load and run."""
    import keras

    from aiface.bundle import Bundle, Metadata, save_bundle
    from training.models.backbones import build_model

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
    from server import create_app

    return create_app({"MODEL_PATH": str(tiny_model_path)})


@pytest.fixture
def client(app):
    return app.test_client()


def _dataset(root, counts, sources):
    """A 140k layout of synthetic faces: ``counts`` images per split and class, named after ``sources`` (per
    class) in turn, so that the file names give the sources."""
    seed = 0
    for split, count in counts:
        for label in ("real", "fake"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(count):
                seed += 1
                source = sources[label][index % len(sources[label])]
                pixels = face_like(seed, fake=label == "fake")
                (folder / f"{source}_{seed:04x}.png").write_bytes(encode(pixels))
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A 140k-layout folder of small synthetic images, a few per class and split."""
    return _dataset(tmp_path_factory.mktemp("data"), (("train", 12), ("valid", 6), ("test", 6)),
                    {"real": ("synth_b", "synth_a"), "fake": ("synth_b", "synth_a")})


@pytest.fixture(scope="session")
def shipped_sources_dataset(tmp_path_factory):
    """The same, with the source names of ../shared/data that the shipped model's recipe names."""
    fakes = ("zoya_140k_subset", "djb_sd14_blonde", "dhiandika_sd15_faces", "gengap_sd1_class",
             "gengap_sd1_dreambooth", "gebaltso_sdfd_sd21", "flux1_politicians")
    return _dataset(tmp_path_factory.mktemp("shipped_sources"), (("train", 14), ("valid", 7), ("test", 4)),
                    {"real": ("zoya_140k_subset", "djb_unsplash_men"), "fake": fakes})


@pytest.fixture(scope="module")
def browser():
    """node and Chromium, with the extension's npm packages installed and the extension built."""
    node = tool("node")
    chromium = tool("chromium", "/usr/bin/chromium")
    build_extension()
    return node, chromium


class Listener:
    """A socket listening on 127.0.0.1 that must be left alone: ``connections()`` counts who knocked."""

    def __init__(self):
        import socket

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.socket.setblocking(False)
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/manifest.c2pa"

    def connections(self) -> int:
        """Connections made so far: a connect completes in the kernel's backlog, accepted or not."""
        count = 0
        while True:
            try:
                connection, _ = self.socket.accept()
            except BlockingIOError:
                return count
            connection.close()
            count += 1


@pytest.fixture
def listener():
    """A local port that a reader must never connect to (the address named inside a crafted file)."""
    listening = Listener()
    yield listening
    listening.socket.close()
