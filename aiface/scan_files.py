"""The files of ``aiface scan``, read and written with care: inputs are anyone's, outputs go only where asked.

- Only regular files are read: a device (``/dev/zero``), a fifo or a socket
  named in a list would grow or hang a scan, so it is refused (``not_a_file``)
  without reading a byte. Opening never blocks (``O_NONBLOCK``: a fifo with no
  writer would wait forever), and the kind is checked on the opened file, so a
  path swapped after it was listed is caught too.
- The size is checked before anything is read, and reading stops past the
  limit, so a file growing while it is read is refused as well.
- Hashing streams the file in blocks, bounded by the same limit.
- Results are written only as plain files inside the output folder: never
  through a symbolic link (``O_NOFOLLOW``), which could point anywhere.
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import IO

BLOCK = 1 << 20


class InputError(Exception):
    """An input that is not read: ``code`` (``unreadable``, ``not_a_file``, ``too_large``) and a plain message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _open_regular(path: str, max_bytes: int) -> IO[bytes]:
    """The file open for reading; raises InputError for anything but a regular file that fits."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise InputError("unreadable", f"cannot read the file: {error.strerror or error}") from None
    handle = os.fdopen(descriptor, "rb")
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode):
        handle.close()
        raise InputError("not_a_file", "not a regular file (a device, a fifo or a socket): only files are scanned")
    if info.st_size > max_bytes:
        handle.close()
        raise InputError("too_large", f"the file is {info.st_size:,} bytes, over the {max_bytes:,} allowed")
    return handle


def read_regular(path: str, max_bytes: int) -> bytes:
    """A regular file's bytes, at most ``max_bytes``; raises InputError otherwise."""
    handle = _open_regular(path, max_bytes)
    try:
        with handle:
            data = handle.read(max_bytes + 1)
    except OSError as error:
        raise InputError("unreadable", f"cannot read the file: {error.strerror or error}") from None
    if len(data) > max_bytes:
        raise InputError("too_large", f"the file grew past the {max_bytes:,} bytes allowed while it was read")
    return data


def sha256_of(path: str, max_bytes: int) -> str | None:
    """The SHA-256 of a regular file of at most ``max_bytes``, read a block at a time; None for any other."""
    try:
        handle = _open_regular(path, max_bytes)
    except InputError:
        return None
    digest, total = hashlib.sha256(), 0
    try:
        with handle:
            while block := handle.read(BLOCK):
                total += len(block)
                if total > max_bytes:
                    return None
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def write_inside(path: os.PathLike | str, text: str) -> None:
    """Write ``text`` to a plain file, never through a symbolic link; raises OSError (ELOOP) on a link."""
    with open_inside(path) as handle:
        handle.write(text)


def open_inside(path: os.PathLike | str) -> IO[str]:
    """A plain file opened to be written from the start (UTF-8), never through a symbolic link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    return os.fdopen(os.open(path, flags, 0o644), "w", encoding="utf-8", newline="")
