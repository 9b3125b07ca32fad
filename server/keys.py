"""Who may call the service: API keys and a request rate for each.

With ``API_KEYS_FILE`` set, every ``/v1/`` request needs ``Authorization:
Bearer <key>``; ``/healthz`` and ``/openapi.json`` stay open. The file holds the
keys' SHA-256 digests in hex, one per line (``#`` starts a comment), so that it
never holds a key itself; it is read again whenever it changes (its size, time
or inode), so a key is added or revoked without a restart. A file that cannot
be read, or a line that is no digest, stops start-up; later, the keys read
before are kept and the problem is logged.

A key is compared, digest to digest, with every known one in constant time
(``hmac.compare_digest``), and neither it nor its digest is ever logged. Each
key may make ``API_KEY_RATE_PER_MINUTE`` requests a minute (a token bucket of
that many, refilled evenly), counted in each process; past that the answer is a
429 with ``Retry-After``. The check runs before the body is read: an unknown
caller costs no upload.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import threading
import time
from pathlib import Path

from flask import Flask, current_app, g, request

from server.exceptions import ApiError

EXTENSION_KEY = "aiface_keys"
DIGEST = re.compile(r"^[0-9a-f]{64}$")
PROTECTED_PREFIX = "/v1/"


class KeysFileError(ValueError):
    """API_KEYS_FILE cannot be read, or holds a line that is no SHA-256 hex digest."""


def read_digests(path: str | Path) -> frozenset[str]:
    """The digests a keys file lists (lower case); raises KeysFileError."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise KeysFileError(f"cannot read the API keys file {path}: {error}") from None
    digests = set()
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip().lower()
        if entry and not DIGEST.match(entry):
            raise KeysFileError(f"{path}, line {number}: not a SHA-256 hex digest (64 characters 0-9a-f); "
                                f"write sha256sum's output for each key, never the key")
        if entry:
            digests.add(entry)
    return frozenset(digests)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyRing:
    """The known digests, read again when the file changes."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._digests = read_digests(path)

    def _stat(self):
        try:
            found = os.stat(self.path)
        except OSError:
            return None
        return found.st_mtime_ns, found.st_size, found.st_ino

    def digests(self) -> frozenset[str]:
        stamp = self._stat()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    try:
                        self._digests = read_digests(self.path)
                    except KeysFileError as error:
                        current_app.logger.error("API keys not reloaded, the previous ones stay: %s", error)
                    self._stamp = stamp
        return self._digests

    def known(self, key: str) -> str | None:
        """The key's digest when it is known, else None; every digest is compared, each in constant time."""
        wanted = digest(key)
        found = False
        for known in self.digests():
            found |= hmac.compare_digest(wanted, known)
        return wanted if found else None


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests at once, refilled at that rate."""

    def __init__(self, per_minute: float):
        self.capacity = per_minute
        self.refill_per_s = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def wait_s(self, key: str) -> float:
        """0 when the request may go (a token taken), else the seconds until one is there."""
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.refill_per_s)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.refill_per_s


def _refused(status: int, code: str, message: str, **headers) -> ApiError:
    g.close_connection = True  # its body, if any, is not read
    return ApiError(status, code, message, headers=headers)


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def register(app: Flask) -> None:
    """Checks keys on /v1/ when API_KEYS_FILE is set; before the body is buffered (server.admission)."""
    if not app.config["API_KEYS_FILE"]:
        return
    ring = KeyRing(app.config["API_KEYS_FILE"])
    limiter = RateLimiter(app.config["API_KEY_RATE_PER_MINUTE"])
    app.extensions[EXTENSION_KEY] = ring

    @app.before_request
    def _authenticate():
        if not request.path.startswith(PROTECTED_PREFIX) or request.method == "OPTIONS":
            return
        key = _bearer()
        known = ring.known(key) if key else None
        if known is None:
            raise _refused(401, "unauthorized",
                           "send a valid API key as 'Authorization: Bearer <key>'" if key is None
                           else "the API key is not valid (unknown or revoked)",
                           **{"WWW-Authenticate": 'Bearer realm="aiface"'})
        wait = limiter.wait_s(known)
        if wait > 0:
            raise _refused(429, "rate_limited",
                           f"this key may make {app.config['API_KEY_RATE_PER_MINUTE']:g} requests a minute; "
                           f"try again in {math.ceil(wait)} s", **{"Retry-After": str(math.ceil(wait))})
