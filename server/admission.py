"""Admission control: at most ``MAX_IN_FLIGHT`` detection requests and ``MAX_PIXELS_IN_FLIGHT`` pixels per process.

The micro-batcher's bounded queue (``MAX_QUEUE``) sheds load when the model
is the bottleneck, but decoding and face finding run in the request threads
before anything reaches it. Counting whole detection requests at the door
bounds every stage: the next request past the limit gets a 503 with
Retry-After at once instead of sharing the CPU with all the others until
every one of them is slow.

A request takes its place only once its whole body has been read
(server/body.py), so that clients trickling their uploads hold no place.

Requests are not all alike: decoding a 7000 x 7000 PNG of 150 KB takes some
200 MB for a moment. ``PixelBudget`` counts the pixels of the images being
decoded and prepared; an image that does not fit waits for room (at most
``INFERENCE_TIMEOUT_S``, then a 503).
"""

from __future__ import annotations

import contextlib
import threading

from flask import Flask, g, request

from server.body import buffer_body
from server.exceptions import Busy

# The endpoints that do the expensive work; health and model card are never refused.
DETECTION_ENDPOINTS = frozenset({"api.detect", "api.detect_batch"})
EXTENSION_KEY = "aiface_admission"


class Admission:
    def __init__(self, limit: int):
        self.limit = limit
        self._in_flight = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        """Take a place, or raise Busy when there is none."""
        with self._lock:
            if self._in_flight >= self.limit:
                raise Busy(f"{self._in_flight} detection requests are already being handled "
                           f"(at most {self.limit}); retry shortly")
            self._in_flight += 1

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        return self._in_flight


class PixelBudget:
    """At most ``limit`` pixels in images being decoded and prepared at once; one image alone always fits."""

    def __init__(self, limit: int):
        self.limit = limit
        self._used = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int, timeout_s: float):
        """Hold room for ``pixels`` while the block runs; raises Busy after ``timeout_s`` without room."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._used == 0 or self._used + pixels <= self.limit, timeout_s):
                raise Busy(f"images of {self._used:,} pixels are being decoded (at most {self.limit:,} at once); "
                           f"retry shortly")
            self._used += pixels
        try:
            yield
        finally:
            with self._changed:
                self._used -= pixels
                self._changed.notify_all()

    @property
    def used(self) -> int:
        return self._used


def register(app: Flask) -> None:
    admission = app.extensions[EXTENSION_KEY] = Admission(app.config["MAX_IN_FLIGHT"])

    @app.before_request
    def _admit():
        if request.endpoint in DETECTION_ENDPOINTS:
            buffer_body(request, app.config["MAX_CONTENT_LENGTH"], app.config["REQUEST_DEADLINE_S"])
            admission.enter()
            g.admitted = True

    @app.teardown_request
    def _release(error):
        if g.pop("admitted", False):
            admission.leave()
