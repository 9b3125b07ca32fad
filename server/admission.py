"""Admission control: at most ``MAX_IN_FLIGHT`` detection requests per process.

The micro-batcher's bounded queue (``MAX_QUEUE``) sheds load when the model
is the bottleneck, but decoding and face finding run in the request threads
before anything reaches it. Counting whole detection requests at the door
bounds every stage: the next request past the limit gets a 503 with
Retry-After at once, before its upload is even read, instead of sharing the
CPU with all the others until every one of them is slow.
"""

from __future__ import annotations

import threading

from flask import Flask, g, request

# The endpoints that do the expensive work; health and model card are never refused.
DETECTION_ENDPOINTS = frozenset({"api.detect", "api.detect_batch"})
EXTENSION_KEY = "aiface_admission"


class Busy(RuntimeError):
    """As many detection requests as allowed are already being handled."""


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


def register(app: Flask) -> None:
    admission = app.extensions[EXTENSION_KEY] = Admission(app.config["MAX_IN_FLIGHT"])

    @app.before_request
    def _admit():
        if request.endpoint in DETECTION_ENDPOINTS:
            admission.enter()
            g.admitted = True

    @app.teardown_request
    def _release(error):
        if g.pop("admitted", False):
            admission.leave()
