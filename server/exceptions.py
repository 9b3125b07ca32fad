"""The service's exceptions, in a module that imports nothing of the service.

Each module that raises one imports it from here, and ``server.errors``
maps each to its HTTP answer; before, errors imported the modules that raise
them while those imported errors, a circle that one import hidden inside a
function kept from failing.
"""

from __future__ import annotations


class ApiError(Exception):
    """A request the client must change: an HTTP ``status``, a ``code``, a message in words, and headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class Busy(RuntimeError):
    """As many detection requests (or decoded pixels) as allowed are already being handled."""


class QueueFull(RuntimeError):
    """More inputs are waiting for the model than the queue may hold."""


class InferenceTimeout(RuntimeError):
    """The model did not answer in time (the service is overloaded)."""


class BackendUnavailable(RuntimeError):
    """TF Serving did not answer, or answered with an error."""


def too_large_message(limit: int) -> str:
    """What a client is told when its request body is over MAX_CONTENT_LENGTH (server.errors and server.body)."""
    return f"the request body is over the {limit:,} bytes allowed (MAX_CONTENT_LENGTH); send a smaller image"
