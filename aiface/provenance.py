"""Reading what a file says about its origin: C2PA Content Credentials, XMP, PNG text chunks, EXIF.

``read_provenance(data, trust_anchors)`` gives the findings that
``aiface.provenance_rule.summarise`` turns into the service's ``provenance``
answer. It reads the bytes the service already holds and never raises on bad
input: a malformed, huge or hostile block gives a finding that says so.

- C2PA: the official library (``c2pa-python``, c2pa-rs underneath) reads and
  validates the manifest store of JPEG, PNG, WebP, AVIF (and the other formats it
  knows); the signer counts as trusted only when it chains to one of the PEM
  anchors the operator configured (TRUST_ANCHORS), none by default. The native
  reader cannot be interrupted, so it runs in a small pool of threads: past
  ``C2PA_TIMEOUT_S`` the answer is ``unreadable`` (timeout), and with every
  thread busy on a slow file the next ones are not read (``busy``).
- XMP: the first packet (``<x:xmpmeta`` ... ``</x:xmpmeta>``, at most
  ``MAX_XMP_BYTES``) in any format, found by scanning as the XMP specification
  allows; its fields are matched with the patterns of ``provenance_rule.XMP_FIELDS``.
- PNG: the tEXt, zTXt and iTXt chunks (keyword -> text), compressed ones inflated
  to at most ``MAX_TEXT_BYTES``, at most ``MAX_CHUNKS`` chunks walked.
- EXIF: Software, Make, Model and Artist from IFD0, through Pillow (any format).
- Pixels: an open generator's invisible watermark (``aiface/watermark.py``).
"""

from __future__ import annotations

import io
import re
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from PIL import Image

from aiface.provenance_rule import XMP_FIELDS
from aiface.watermark import read_watermark

C2PA_TIMEOUT_S = 2.0
C2PA_THREADS = 2
MAX_XMP_BYTES = 1 << 20
MAX_TEXT_BYTES = 64 * 1024
MAX_CHUNKS = 10_000
# Failure codes kept per manifest: enough to say why, bounded whatever a file holds.
MAX_PROBLEMS = 8
EXIF_FIELDS = {0x0131: "exif:Software", 0x010F: "exif:Make", 0x0110: "exif:Model", 0x013B: "exif:Artist"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# c2pa-rs reports a signer not on the trust list as a failure; it is not one of the file's.
UNTRUSTED = "signingCredential.untrusted"


class TrustAnchorError(ValueError):
    """TRUST_ANCHORS names no readable PEM certificate."""


def load_trust_anchors(path: str | Path | None) -> str | None:
    """The PEM text of a file, or of every *.pem / *.crt file in a folder; None for no path."""
    if not path:
        return None
    path = Path(path)
    files = sorted([*path.glob("*.pem"), *path.glob("*.crt")]) if path.is_dir() else [path]
    try:
        text = "".join(file.read_text(encoding="ascii") for file in files)
    except (OSError, UnicodeDecodeError) as error:
        raise TrustAnchorError(f"cannot read the trust anchors at {path}: {error}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise TrustAnchorError(f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return text


_pool = ThreadPoolExecutor(max_workers=C2PA_THREADS, thread_name_prefix="c2pa")
_free = threading.BoundedSemaphore(C2PA_THREADS)
_contexts: dict[str | None, object] = {}


def _context(trust_anchors: str | None):
    """One c2pa Context per trust list: verifying trust only when there is a list to verify against."""
    import c2pa

    if trust_anchors not in _contexts:
        settings = {"verify": {"verify_trust": trust_anchors is not None}}
        if trust_anchors is not None:
            settings["trust"] = {"trust_anchors": trust_anchors}
        _contexts[trust_anchors] = c2pa.Context.from_dict(settings)
    return _contexts[trust_anchors]


def _manifest_store(data: bytes, trust_anchors: str | None):
    """(validation state, the store as JSON text), or None without a manifest. Raises c2pa.C2paError."""
    import c2pa

    try:
        reader = c2pa.Reader.try_create(None, io.BytesIO(data), context=_context(trust_anchors))
    except c2pa.C2paError.NotSupported:
        return None  # a format the library does not read can hold no manifest it could check
    if reader is None:
        return None
    with reader:
        return reader.get_validation_state(), reader.json()


def _c2pa_finding(state: str, store: dict) -> dict:
    manifest = store.get("manifests", {}).get(store.get("active_manifest") or "", {})
    problems = [status.get("code", "") for status in store.get("validation_status") or []
                if status.get("code") != UNTRUSTED]
    validation = {"Trusted": "trusted", "Valid": "valid"}.get(state, "invalid")
    if validation != "invalid":
        problems = []
    signature = manifest.get("signature_info") or {}
    tools = manifest.get("claim_generator_info") or []
    tool = tools[0] if tools and isinstance(tools[0], dict) else {}
    types = []
    for assertion in manifest.get("assertions") or []:
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            for action in (assertion.get("data") or {}).get("actions") or []:
                if isinstance(action, dict) and isinstance(action.get("digitalSourceType"), str):
                    types.append(action["digitalSourceType"])
    return {
        "validation": validation,
        "problems": (problems or (["manifest.invalid"] if validation == "invalid" else []))[:MAX_PROBLEMS],
        "signer": {"organization": signature.get("issuer"), "common_name": signature.get("common_name")}
        if signature else None,
        "claim_generator": " ".join(str(part) for part in (tool.get("name"), tool.get("version")) if part) or None,
        "digital_source_types": types[:MAX_PROBLEMS],
    }


def _unreadable(why: str) -> dict:
    return {"validation": "unreadable", "problems": [why], "signer": None, "claim_generator": None,
            "digital_source_types": []}


def read_c2pa(data: bytes, trust_anchors: str | None = None, timeout_s: float = C2PA_TIMEOUT_S) -> dict | None:
    """The C2PA finding for a file's bytes, or None when it has no manifest store."""
    import json

    import c2pa

    if not _free.acquire(blocking=False):
        return _unreadable("busy: not read, earlier files still hold every reader")

    def run():
        try:
            return _manifest_store(data, trust_anchors)
        finally:
            _free.release()

    future = _pool.submit(run)
    try:
        found = future.result(timeout=timeout_s)
    except FutureTimeout:
        return _unreadable(f"timeout: not read within {timeout_s:g} s")
    except c2pa.C2paError as error:
        return _unreadable(f"malformed: {str(error)[:200]}")
    if found is None:
        return None
    state, text = found
    try:
        return _c2pa_finding(state or "", json.loads(text))
    except (ValueError, AttributeError, TypeError) as error:
        return _unreadable(f"malformed: {error}")


def _xmp_texts(data: bytes) -> dict:
    start = data.find(b"<x:xmpmeta")
    if start < 0:
        return {}
    end = data.find(b"</x:xmpmeta>", start, start + MAX_XMP_BYTES)
    packet = data[start:end if end >= 0 else start + MAX_XMP_BYTES].decode("utf-8", "replace")
    texts = {}
    for field, pattern in XMP_FIELDS.items():
        match = re.search(pattern, packet)
        if match:
            texts[field] = next(group for group in match.groups() if group is not None)
    return texts


def _inflate(data: bytes, encoding: str) -> str | None:
    try:
        return zlib.decompressobj().decompress(data, MAX_TEXT_BYTES).decode(encoding, "replace")
    except zlib.error:
        return None


def _png_texts(data: bytes) -> dict:
    """keyword -> text of a PNG's text chunks (a later chunk with the same keyword is ignored)."""
    if not data.startswith(PNG_SIGNATURE):
        return {}
    texts, at = {}, len(PNG_SIGNATURE)
    for _ in range(MAX_CHUNKS):
        if at + 8 > len(data):
            break
        length, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
        body = data[at + 8:at + 8 + length]
        at += 12 + length
        if kind == b"IEND" or len(body) < length:
            break
        keyword, _, rest = body.partition(b"\x00")
        key = "png:" + keyword[:79].decode("latin-1")
        if kind == b"tEXt":
            text = rest[:MAX_TEXT_BYTES].decode("latin-1")
        elif kind == b"zTXt":
            text = _inflate(rest[1:], "latin-1")
        elif kind == b"iTXt" and len(rest) >= 2:
            compressed, value = rest[0], rest[2:].split(b"\x00", 2)[-1]  # skip language and translated keyword
            text = _inflate(value, "utf-8") if compressed else value[:MAX_TEXT_BYTES].decode("utf-8", "replace")
        else:
            continue
        if text is not None:
            texts.setdefault(key, text[:MAX_TEXT_BYTES])
    return texts


def _exif_texts(data: bytes) -> dict:
    try:
        with Image.open(io.BytesIO(data)) as image:
            exif = image.getexif()
    except Exception:  # any decoder failure: the decoder itself reports bad images
        return {}
    texts = {}
    for tag, field in EXIF_FIELDS.items():
        value = exif.get(tag)
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str) and value.strip("\x00 "):
            texts[field] = value.strip("\x00 ")[:MAX_TEXT_BYTES]
    return texts


def read_texts(data: bytes) -> dict:
    """The metadata fields that can name a generator or a source type."""
    return {**_exif_texts(data), **_png_texts(data), **_xmp_texts(data)}


def read_provenance(data: bytes, trust_anchors: str | None = None) -> dict:
    """The findings for a file's bytes: {"c2pa": ... or None, "texts": {...}, "watermark": ... or None}."""
    return {"c2pa": read_c2pa(data, trust_anchors), "texts": read_texts(data), "watermark": read_watermark(data)}
