"""Reading what a file says about its origin: C2PA Content Credentials, XMP, PNG text chunks, EXIF.

``read_provenance(data, trust_anchors)`` gives the findings that
``aiface.provenance_rule.summarise`` turns into the service's ``provenance``
answer. It reads the bytes the service already holds and never raises on bad
input: a malformed, huge or hostile block gives a finding that says so.

- C2PA: the official library (``c2pa-python``, c2pa-rs underneath) reads and
  validates the manifest store of JPEG, PNG, WebP, AVIF (and the other formats it
  knows); the signer counts as trusted only when it chains to one of the PEM
  anchors the operator configured (TRUST_ANCHORS), none by default. It never
  touches the network: a manifest the file only points to (a URL) is ``remote``,
  not fetched, and neither OCSP nor any other host is asked. The native reader
  cannot be interrupted, so the work it is given is bounded first (a file with
  more JUMBF boxes than ``LIMITS["jumbf_boxes"]`` is not handed to it) and it runs
  in a small pool of threads: past ``C2PA_TIMEOUT_S``, or with every thread busy,
  the answer is ``unavailable``, never a broken manifest.
- XMP: the first packet (from ``<?xpacket begin`` or ``xmpmeta`` to its end, at
  most ``LIMITS["xmp_bytes"]``, in UTF-8 or UTF-16), its fields found under any
  prefix bound to their namespace (``provenance_rule.XMP_FIELDS``).
- PNG: the tEXt, zTXt and iTXt chunks (keyword -> text; XMP is read from its
  ``XML:com.adobe.xmp`` chunk too, compressed or not), at most
  ``LIMITS["chunks"]`` chunks walked and ``LIMITS["texts_bytes"]`` of text read,
  inflated or not; a compression method other than deflate is skipped, as Pillow
  does. Past a limit the rest is not read and ``unread`` says so.
- EXIF: Software, Make, Model and Artist from IFD0, through Pillow (any format).
- Pixels: an open generator's invisible watermark (``aiface/watermark.py``).
"""

from __future__ import annotations

import io
import json
import re
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from PIL import Image

from aiface.provenance_rule import (
    AI_SOURCE_TYPES,
    CAPTURE_SOURCE_TYPES,
    LIMITS,
    MANIFEST_MARKERS,
    XML_SPACE,
    XMP_END,
    XMP_ENTITIES,
    XMP_FIELDS,
    XMP_PREFIX,
    XMP_REFERENCE,
    XMP_STARTS,
    XMP_VALUE,
    source_type_name,
)
from aiface.watermark import read_watermark

C2PA_TIMEOUT_S = 2.0
C2PA_THREADS = 2
MAX_TEXT_BYTES = LIMITS["text_bytes"]
MAX_ITEMS = LIMITS["items"]
EXIF_FIELDS = {0x0131: "exif:Software", 0x010F: "exif:Make", 0x0110: "exif:Model", 0x013B: "exif:Artist"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_XMP_KEY = "png:XML:com.adobe.xmp"
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
# Every setting that could reach the network, off: a file must never make the
# reader send a request (an address inside an upload would otherwise be fetched).
OFFLINE = {
    "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
    "core": {"allowed_network_hosts": [], "max_decompressed_manifest_size_in_mb": 16},
}
# What c2pa-rs says when a manifest lives at a URL it was told not to fetch.
REMOTE_MESSAGE = "must fetch remote manifests"


class OverLimit(Exception):
    """A reader reached one of ``LIMITS``; its message says which."""


def _context(trust_anchors: str | None):
    """One c2pa Context per trust list: verifying trust only when there is a list to verify against."""
    import c2pa

    if trust_anchors not in _contexts:
        settings = {**OFFLINE, "verify": {**OFFLINE["verify"], "verify_trust": trust_anchors is not None}}
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


def source_types(found: list) -> list[str]:
    """Each digitalSourceType once, the AI and capture ones first, at most ``LIMITS["items"]``.

    A file cannot push a declaration out of the list by putting other actions before it.
    """
    unique = list(dict.fromkeys(found))
    known = (*AI_SOURCE_TYPES, *CAPTURE_SOURCE_TYPES)
    return sorted(unique, key=lambda value: source_type_name(value) not in known)[:MAX_ITEMS]


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
        "problems": (problems or (["manifest.invalid"] if validation == "invalid" else []))[:MAX_ITEMS],
        "signer": {"organization": signature.get("issuer"), "common_name": signature.get("common_name")}
        if signature else None,
        "claim_generator": " ".join(str(part) for part in (tool.get("name"), tool.get("version")) if part) or None,
        "digital_source_types": source_types(types),
    }


def _not_read(validation: str, why: str) -> dict:
    return {"validation": validation, "problems": [why], "signer": None, "claim_generator": None,
            "digital_source_types": []}


def jumbf_boxes(data: bytes) -> int:
    """How many JUMBF boxes a file holds (each starts with a description box, ``jumd``)."""
    return data.count(b"jumd")


def read_c2pa(data: bytes, trust_anchors: str | None = None, timeout_s: float = C2PA_TIMEOUT_S) -> dict | None:
    """The C2PA finding for a file's bytes, or None when it has no manifest store."""
    import c2pa

    if not any(marker.encode() in data for marker in MANIFEST_MARKERS):
        return None
    boxes = jumbf_boxes(data)
    if boxes > LIMITS["jumbf_boxes"]:
        return _not_read("unavailable", f"over_limit: {boxes:,} JUMBF boxes, at most {LIMITS['jumbf_boxes']:,} read")
    if not _free.acquire(blocking=False):
        return _not_read("unavailable", "busy: not read, earlier files still hold every reader")

    def run():
        try:
            return _manifest_store(data, trust_anchors)
        finally:
            _free.release()

    future = _pool.submit(run)
    try:
        found = future.result(timeout=timeout_s)
    except FutureTimeout:
        return _not_read("unavailable", f"timeout: not read within {timeout_s:g} s")
    except c2pa.C2paError as error:
        if REMOTE_MESSAGE in str(error):
            return _not_read("remote", "remote_manifest: the manifest lives at an address; not fetched")
        return _not_read("unreadable", f"malformed: {str(error)[:200]}")
    if found is None:
        return None
    state, text = found
    try:
        return _c2pa_finding(state or "", json.loads(text))
    except (ValueError, AttributeError, TypeError) as error:
        return _not_read("unreadable", f"malformed: {error}")


class Budget:
    """What one file's metadata readers may still spend (``LIMITS``), and why they stopped."""

    def __init__(self):
        self.text_bytes = LIMITS["texts_bytes"]
        self.unread: list[str] = []

    def spend(self, size: int) -> None:
        self.text_bytes -= size
        if self.text_bytes < 0:
            raise OverLimit(f"over_limit: more than {LIMITS['texts_bytes']:,} bytes of PNG text")

    def stop(self, error: OverLimit) -> None:
        self.unread.append(str(error))


def _xmp_packet(data: bytes) -> str:
    """The first XMP packet's text, bounded, in whichever of UTF-8, UTF-16BE, UTF-16LE it is written."""
    found = []
    for encoding in ("utf-8", "utf-16-be", "utf-16-le"):
        for marker in XMP_STARTS:
            at = data.find(marker.encode(encoding))
            if at >= 0:
                found.append((at, encoding))
    if not found:
        return ""
    start, encoding = min(found)
    packet = data[start:start + LIMITS["xmp_bytes"]].decode(encoding, "replace")
    end = re.search(XMP_END, packet)
    return packet[:end.start()] if end else packet


def _resolve_references(value: str) -> str:
    def character(match: re.Match) -> str:
        decimal, hexadecimal, name = match.groups()
        if name:
            return XMP_ENTITIES[name]
        code = int(decimal) if decimal else int(hexadecimal, 16)
        return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"

    return re.sub(XMP_REFERENCE, character, value)


def _xmp_texts(data: bytes) -> dict:
    packet = _xmp_packet(data)
    if not packet:
        return {}
    texts = {}
    for field, spec in XMP_FIELDS.items():
        namespace = re.escape(spec["namespace"])
        bound = list(dict.fromkeys(re.findall(XMP_PREFIX.replace("%NAMESPACE%", namespace), packet)))
        prefixes = {spec["prefix"], *bound[:LIMITS["xmp_prefixes"]]}  # a packet could bind thousands
        names = "|".join(re.escape(prefix) for prefix in sorted(prefixes))
        match = re.search(XMP_VALUE.replace("%PROPERTY%", f"(?:{names}):{spec['name']}"), packet)
        if match:
            value = _resolve_references(next(group for group in match.groups() if group is not None))
            texts[field] = value.strip(XML_SPACE)
    return texts


def _inflate(data: bytes, encoding: str, budget: Budget) -> str | None:
    try:
        inflated = zlib.decompressobj().decompress(data, MAX_TEXT_BYTES)
    except zlib.error:
        return None
    budget.spend(len(inflated))
    return inflated.decode(encoding, "replace")


def _plain(data: bytes, encoding: str, budget: Budget) -> str:
    kept = data[:MAX_TEXT_BYTES]
    budget.spend(len(kept))
    return kept.decode(encoding, "replace")


def _png_texts(data: bytes, budget: Budget) -> dict:
    """keyword -> text of a PNG's text chunks (a later chunk with the same keyword is ignored)."""
    if not data.startswith(PNG_SIGNATURE):
        return {}
    texts, at = {}, len(PNG_SIGNATURE)
    try:
        for chunk in range(LIMITS["chunks"] + 1):
            if at + 8 > len(data):
                break
            if chunk == LIMITS["chunks"]:
                raise OverLimit(f"over_limit: more than {LIMITS['chunks']:,} PNG chunks")
            length, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
            body = data[at + 8:at + 8 + length]
            at += 12 + length
            if kind == b"IEND" or len(body) < length:
                break
            keyword, _, rest = body.partition(b"\x00")
            key = "png:" + keyword[:79].decode("latin-1")
            if kind == b"tEXt":
                text = _plain(rest, "latin-1", budget)
            elif kind == b"zTXt" and rest[:1] == b"\x00":
                text = _inflate(rest[1:], "latin-1", budget)
            elif kind == b"iTXt" and len(rest) >= 2 and rest[1] == 0 and rest[0] in (0, 1):
                value = rest[2:].split(b"\x00", 2)[-1]  # skips the language and translated keyword
                text = _inflate(value, "utf-8", budget) if rest[0] else _plain(value, "utf-8", budget)
            else:
                continue  # another chunk, or a compression method that is not deflate (Pillow skips it too)
            if text is not None:
                texts.setdefault(key, text[:MAX_TEXT_BYTES])
    except OverLimit as error:
        budget.stop(error)
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


def read_texts(data: bytes, budget: Budget | None = None) -> dict:
    """The metadata fields that can name a generator or a source type; ``budget.unread`` says what was not read."""
    budget = budget or Budget()
    png = _png_texts(data, budget)
    # A PNG's XMP is an iTXt chunk, often compressed: read there when the file's bytes show none.
    xmp = _xmp_texts(data) or _xmp_texts(png.get(PNG_XMP_KEY, "").encode("utf-8"))
    return {**_exif_texts(data), **png, **xmp}


def read_provenance(data: bytes, trust_anchors: str | None = None,
                    hold: Callable[[int], AbstractContextManager] = nullcontext) -> dict:
    """The findings for a file's bytes: {"c2pa": ..., "texts": {...}, "unread": [...], "watermark": ...}.

    ``hold``: entered around the watermark reader's decode of the pixels (``aiface.watermark.read_watermark``).
    """
    budget = Budget()
    texts = read_texts(data, budget)
    return {
        "c2pa": read_c2pa(data, trust_anchors),
        "texts": texts,
        "unread": budget.unread,
        "watermark": read_watermark(data, hold),
    }
