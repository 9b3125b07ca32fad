"""What a file says about its origin, and how that combines with the pixel verdict: the one definition.

The readers (``aiface/provenance.py`` in the service, ``extension/src/provenance.js``
in the browser) turn a file into *findings*:

- ``c2pa``: None when the file has no C2PA manifest store, else
  ``{"validation", "problems", "signer", "claim_generator", "digital_source_types"}``
  where ``validation`` is ``trusted`` (signature and hashes valid, signer on the
  operator's trust list), ``valid`` (valid, signer not on it), ``invalid`` (a
  signature or hash does not validate: ``problems`` holds the failure codes),
  ``unreadable`` (a manifest is there but cannot be parsed), ``remote`` (the file
  only names an address where its manifest lives: never fetched) or
  ``unavailable`` (not read: every reader busy, out of time, or past a limit of
  ``LIMITS``);
- ``texts``: metadata fields that can name a generator, ``{"png:parameters": ...,
  "exif:Software": ..., "xmp:DigitalSourceType": ..., "xmp:CreatorTool": ...}``;
- ``unread``: why part of the file's metadata was not read (a limit of
  ``LIMITS`` reached), ``[]`` when all of it was;
- ``watermark``: None, or the open generator's invisible watermark found in the
  pixels, ``{"name", "bits", "matching_bits"}`` (``aiface/watermark.py``).

``summarise`` turns findings into the ``provenance`` answer, whose ``status`` is,
first match wins:

- ``declared_ai``: a valid (trusted or not) manifest whose actions declare an AI
  source type, an XMP ``DigitalSourceType`` that does, or metadata written by a
  known generator (``GENERATORS``); a declaration read before a reader stopped
  still counts;
- ``watermarked_ai``: the pixels carry an open generator's invisible
  watermark: strong evidence, not a signature (anyone can copy the mark); a
  reader that stopped early never hides it;
- ``tampered``: a manifest whose signature or hashes do not validate, or that
  cannot be parsed; a warning, never evidence that the image is real;
- ``unavailable``: a reader was busy, out of time or past a limit, so the file
  was not fully checked; says nothing either way (never ``tampered``);
- ``remote``: the manifest lives at an address the file names; it is not fetched;
- ``trusted_capture``: a valid manifest declaring a capture, signed by a signer
  on the operator's trust list;
- ``untrusted_capture``: the same, by a signer not on it;
- ``signed``: a valid manifest that declares neither;
- ``none``: nothing that speaks to the origin (stripped metadata proves nothing).

``combine`` is the rule with the pixels: ``declared_ai`` and ``watermarked_ai``
make the verdict ``declared_ai`` ("AI-generated, declared by the file"), label
``fake``, whatever the pixels say; every other status leaves the pixel verdict as
it is, shown beside it. Nothing in a file's metadata ever lowers the pixel
verdict, and no text from a file is put into ``line`` or ``declared_by``: names
the file gives (signer, tool) stay in their own fields.

The extension reads the tables from ``extension/src/provenance.json``, written by
``python -m aiface.provenance_rule extension/src/provenance.json``;
``tests/test_provenance_rule.py`` checks it and runs the JS on the same fixtures.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

DECLARED_AI = "declared_ai"
WATERMARKED_AI = "watermarked_ai"
STATUSES = ("declared_ai", "watermarked_ai", "tampered", "unavailable", "remote", "trusted_capture",
            "untrusted_capture", "signed", "none")
UNAVAILABLE = "unavailable"

# What one file may cost the readers, in both runtimes: past a limit the rest is
# not read (findings ``unread``, or a manifest ``unavailable``). Measured costs in
# docs/reliability.md.
LIMITS = {
    "xmp_bytes": 1 << 20,  # the XMP packet searched
    "text_bytes": 64 * 1024,  # one metadata field, as kept
    "texts_bytes": 2 << 20,  # all PNG text chunks together, inflated or not
    "chunks": 10_000,  # PNG chunks walked
    # JUMBF boxes in a file before its manifest goes to the C2PA reader, whose
    # cost grows faster than the square of the count (1,000: 0.15 s, 2,000: 1.3 s).
    "jumbf_boxes": 1_000,
    "items": 8,  # problem codes and source types kept per manifest
    "xmp_prefixes": 8,  # prefixes bound to a field's namespace that are looked under, besides the usual one
}
# A file holds a C2PA manifest, or the address of one, only if one of these is in
# its bytes: a JUMBF superbox, or XMP's dcterms:provenance. Other files never wait
# for the C2PA reader.
MANIFEST_MARKERS = ("jumb", "provenance")
# Why a reader stopped, in our own words (the prefix of a problem or an ``unread`` entry).
UNAVAILABLE_REASONS = {
    "busy": "every reader was busy with earlier files",
    "timeout": "reading it took too long",
    "over_limit": "the file goes past a reading limit",
}

# IPTC digital source types (the last part of http://cv.iptc.org/newscodes/digitalsourcetype/NAME).
AI_SOURCE_TYPES = (
    "trainedAlgorithmicMedia",  # made by a generative model
    "compositeWithTrainedAlgorithmicMedia",  # a photo with generated parts (an inpainted face)
    "compositeSynthetic",
    "algorithmicMedia",
)
CAPTURE_SOURCE_TYPES = ("digitalCapture", "computationalCapture")

# Metadata that names a generator: the field it is found in and a
# case-insensitive pattern its text matches (Python and JavaScript read the
# same pattern). One test per entry in tests/test_provenance_rule.py.
GENERATORS = [
    {"name": "AUTOMATIC1111 / Forge (Stable Diffusion)", "fields": ["png:parameters"],
     "pattern": r"\bSteps: \d+, Sampler: "},
    {"name": "ComfyUI", "fields": ["png:prompt", "png:workflow"], "pattern": r"\"(class_type|nodes)\"\s*:"},
    {"name": "InvokeAI", "fields": ["png:invokeai_metadata", "png:sd-metadata", "png:Dream"], "pattern": r"\S"},
    {"name": "NovelAI", "fields": ["png:Software", "exif:Software"], "pattern": r"^NovelAI\b"},
    {"name": "Midjourney", "fields": ["exif:Software", "xmp:CreatorTool", "png:Software"],
     "pattern": r"\bMidjourney\b"},
    {"name": "Adobe Firefly", "fields": ["exif:Software", "xmp:CreatorTool"], "pattern": r"\bAdobe Firefly\b"},
    {"name": "DALL·E", "fields": ["exif:Software", "xmp:CreatorTool", "png:Software"], "pattern": r"\bDALL[·\-]?E\b"},
    {"name": "Stable Diffusion", "fields": ["exif:Software", "xmp:CreatorTool", "png:Software"],
     "pattern": r"\bStable Diffusion\b"},
]

# The XMP fields read: a namespace, the prefix usually bound to it, and the
# property's name. No XML parser (a packet is untrusted input, and both runtimes
# must read the same): the prefixes the packet binds to the namespace, besides
# the usual one, are found with XMP_PREFIX; a value with XMP_VALUE (attribute
# with either quote, element text, or rdf:resource); the value's character
# references are then resolved (XMP_REFERENCE). Classes are spelled out so that
# Python's and JavaScript's regular expressions read them alike.
XMP_FIELDS = {
    "xmp:DigitalSourceType": {"namespace": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
                              "prefix": "Iptc4xmpExt", "name": "DigitalSourceType"},
    "xmp:CreatorTool": {"namespace": "http://ns.adobe.com/xap/1.0/", "prefix": "xmp", "name": "CreatorTool"},
}
# %NAMESPACE%: the namespace, escaped; group 1 is a prefix bound to it.
XMP_PREFIX = r"""xmlns:([A-Za-z_][A-Za-z0-9_.-]{0,63})[ \t\r\n]*=[ \t\r\n]*(?:"%NAMESPACE%"|'%NAMESPACE%')"""
# %PROPERTY%: (?:prefix|...):name, escaped; the value is the first group that matched.
XMP_VALUE = (r"""(?:^|[ \t\r\n])%PROPERTY%[ \t\r\n]*=[ \t\r\n]*(?:"([^"<]{1,300})"|'([^'<]{1,300})')"""
             r"""|<%PROPERTY%[ \t\r\n]+[A-Za-z_][A-Za-z0-9_.-]{0,63}:resource[ \t\r\n]*=[ \t\r\n]*"""
             r"""(?:"([^"<]{1,300})"|'([^'<]{1,300})')"""
             r"""|<%PROPERTY%(?:[ \t\r\n][^>/]{0,300})?>([^<]{1,300})<""")
XMP_REFERENCE = r"&(?:#([0-9]{1,7})|#x([0-9A-Fa-f]{1,6})|(amp|lt|gt|quot|apos));"
XMP_ENTITIES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
# Where a packet starts (searched for in UTF-8, UTF-16BE and UTF-16LE) and where it ends.
XMP_STARTS = ("<?xpacket begin", "xmpmeta")
XMP_END = r"</(?:[A-Za-z_][A-Za-z0-9_.-]{0,63}:)?xmpmeta>|<\?xpacket end"
# The white space a value is trimmed of (the same in both runtimes).
XML_SPACE = " \t\r\n"

# The card's words: the pixel verdict's stand-in when the file declares AI
# generation, and one line per status. Only our own words fill them ({by}: which
# part of the file declared it; {problems}: failure codes; {why}: of
# UNAVAILABLE_REASONS): the names a file gives stay in c2pa.signer and
# c2pa.claim_generator, which the card shows apart, quoted.
DECLARED_WORDS = {
    "label": "AI-generated, declared by the file",
    "badge": "AI (declared)",
    "explanation": "The file itself says it was made by AI ({by}); the model's score is shown for reference.",
}
LINES = {
    "declared_ai": "Declared AI-generated by {by}.",
    "watermarked_ai": "An invisible {mark} watermark is in the pixels ({matching} of {bits} bits match): made by "
                      "software that marks its images as that generator's reference code does. Strong evidence "
                      "of AI generation, not a signature: anyone can copy the mark, and editing the image erases it.",
    "tampered": "Content Credentials are broken ({problems}): the file was changed after signing, "
                "or the credentials are damaged. Treat it as a warning.",
    "unavailable": "Provenance not fully checked: {why}. This says nothing about whether the image is real "
                   "or AI-made; check it again later.",
    "remote": "Content Credentials are kept online, at an address the file names; they were not fetched "
              "(addresses in files are never visited), so nothing was checked.",
    "trusted_capture": "Content Credentials: claims a camera capture; signature valid, by a signer on your "
                       "trust list.",
    "untrusted_capture": "Content Credentials: claims a camera capture; signature valid but the signer is not "
                         "on your trust list. This does not show the photo is real.",
    "signed": "Content Credentials: signature valid ({trust}); they declare no AI generation.",
    "none": "",
}
# The part of a problem that may go into a line: a code such as assertion.dataHash.mismatch.
PROBLEM_CODE = r"^[A-Za-z][A-Za-z0-9._]{0,80}"


def source_type_name(value: str) -> str:
    """'trainedAlgorithmicMedia' from the IPTC URI or a bare name."""
    return value.strip(XML_SPACE).rstrip("/").rsplit("/", 1)[-1]


def generator(texts: dict) -> dict | None:
    """The first known generator whose pattern a field's text matches: {name, field}, or None."""
    for entry in GENERATORS:
        for field in entry["fields"]:
            text = texts.get(field)
            if text and re.search(entry["pattern"], text, re.IGNORECASE):
                return {"name": entry["name"], "field": field}
    return None


def _codes(problems: list) -> list[str]:
    """The codes of problems ("timeout: ..." -> "timeout"), once each, in order."""
    codes = []
    for problem in problems:
        match = re.match(PROBLEM_CODE, str(problem))
        if match and match.group(0) not in codes:
            codes.append(match.group(0))
    return codes


def summarise(findings: dict) -> dict:
    """The provenance answer: status, declared_by, generator, c2pa, digital_source_type, watermark, line."""
    c2pa, texts, watermark = findings.get("c2pa"), findings.get("texts") or {}, findings.get("watermark")
    validation = c2pa["validation"] if c2pa is not None else None
    xmp_type = source_type_name(texts["xmp:DigitalSourceType"]) if texts.get("xmp:DigitalSourceType") else None
    named = generator(texts)
    sound = validation in ("valid", "trusted")
    types = [source_type_name(t) for t in c2pa["digital_source_types"]] if sound else []
    unread = _codes([*(c2pa["problems"] if validation == UNAVAILABLE else []), *(findings.get("unread") or [])])
    declared_by = None
    if any(t in AI_SOURCE_TYPES for t in types):
        status, declared_by = DECLARED_AI, "its Content Credentials"
    elif xmp_type in AI_SOURCE_TYPES:
        status, declared_by = DECLARED_AI, f"its XMP metadata (DigitalSourceType {xmp_type})"
    elif named is not None:
        status, declared_by = DECLARED_AI, f"{named['name']} metadata ({named['field']})"
    elif watermark is not None:
        status, declared_by = WATERMARKED_AI, f"an invisible {watermark['name']} watermark"
    elif validation in ("invalid", "unreadable"):
        status = "tampered"
    elif unread:
        status = UNAVAILABLE
    elif validation == "remote":
        status = "remote"
    elif any(t in CAPTURE_SOURCE_TYPES for t in types):
        status = "trusted_capture" if validation == "trusted" else "untrusted_capture"
    else:
        status = "signed" if sound else "none"
    fields = {
        "by": declared_by,
        "problems": ", ".join(_codes((c2pa or {}).get("problems") or [])) or "unknown",
        "why": "; ".join(UNAVAILABLE_REASONS.get(code, UNAVAILABLE_REASONS["over_limit"]) for code in unread),
        "trust": "trusted" if validation == "trusted" else "not trusted",
        **({"mark": watermark["name"], "matching": watermark["matching_bits"], "bits": watermark["bits"]}
           if watermark else {}),
    }
    return {
        "status": status,
        "declared_by": declared_by,
        "line": LINES[status].format(**fields),
        "c2pa": c2pa,
        "digital_source_type": xmp_type,
        "generator": named,
        "watermark": watermark,
    }


def combine(pixel_verdict: str, provenance: dict) -> str:
    """The verdict shown: declared_ai when the file declares AI generation or is watermarked, else the pixels'."""
    return DECLARED_AI if provenance["status"] in (DECLARED_AI, WATERMARKED_AI) else pixel_verdict


def rules() -> dict:
    """The tables as the extension reads them (extension/src/provenance.json)."""
    return {
        "_comment": (
            "Generated by `python -m aiface.provenance_rule extension/src/provenance.json` from "
            "aiface/provenance_rule.py; do not edit."
        ),
        "ai_source_types": list(AI_SOURCE_TYPES),
        "capture_source_types": list(CAPTURE_SOURCE_TYPES),
        "generators": GENERATORS,
        "limits": LIMITS,
        "manifest_markers": list(MANIFEST_MARKERS),
        "unavailable_reasons": UNAVAILABLE_REASONS,
        "xmp_fields": XMP_FIELDS,
        "xmp_prefix": XMP_PREFIX,
        "xmp_value": XMP_VALUE,
        "xmp_reference": XMP_REFERENCE,
        "xmp_entities": XMP_ENTITIES,
        "xmp_starts": list(XMP_STARTS),
        "xmp_end": XMP_END,
        "xml_space": XML_SPACE,
        "declared_words": DECLARED_WORDS,
        "lines": LINES,
        "problem_code": PROBLEM_CODE,
    }


def rules_json() -> str:
    return json.dumps(rules(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m aiface.provenance_rule OUT.json")
    Path(sys.argv[1]).write_text(rules_json(), encoding="utf-8")
