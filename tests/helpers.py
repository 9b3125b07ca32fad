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
import shutil
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


EXTENSION = Path(__file__).resolve().parent.parent / "extension"


def tool(name: str, fallback: str | None = None) -> str:
    """The program's path; the test is skipped when it is not installed."""
    import pytest

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
