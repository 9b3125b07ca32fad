"""What a file says about its origin, and how that combines with the pixel verdict: the one definition.

The readers (``aiface/provenance.py`` in the service, ``extension/src/provenance.js``
in the browser) turn a file into *findings*:

- ``c2pa``: None when the file has no C2PA manifest store, else
  ``{"validation", "problems", "signer", "claim_generator", "digital_source_types"}``
  where ``validation`` is ``trusted`` (signature and hashes valid, signer on the
  operator's trust list), ``valid`` (valid, signer not on it), ``invalid`` (a
  signature or hash does not validate: ``problems`` holds the failure codes) or
  ``unreadable`` (a manifest is there but cannot be parsed, or took too long);
- ``texts``: metadata fields that can name a generator, ``{"png:parameters": ...,
  "exif:Software": ..., "xmp:DigitalSourceType": ..., "xmp:CreatorTool": ...}``;
- ``watermark``: None, or the open generator's invisible watermark found in the
  pixels, ``{"name", "bits", "matching_bits"}`` (``aiface/watermark.py``).

``summarise`` turns findings into the ``provenance`` answer, whose ``status`` is,
first match wins:

- ``declared_ai``: a valid (trusted or not) manifest whose actions declare an AI
  source type, an XMP ``DigitalSourceType`` that does, or metadata written by a
  known generator (``GENERATORS``);
- ``watermarked_ai``: the pixels carry an open generator's invisible
  watermark: strong evidence, not a signature (anyone can copy the mark);
- ``tampered``: a manifest whose signature or hashes do not validate, or that
  cannot be read; a warning, never evidence that the image is real;
- ``trusted_capture``: a valid manifest declaring a capture, signed by a signer
  on the operator's trust list;
- ``untrusted_capture``: the same, by a signer not on it;
- ``signed``: a valid manifest that declares neither;
- ``none``: nothing that speaks to the origin (stripped metadata proves nothing).

``combine`` is the rule with the pixels: ``declared_ai`` and ``watermarked_ai``
make the verdict ``declared_ai`` ("AI-generated, declared by the file"), label
``fake``, whatever the pixels say; every other status leaves the pixel verdict as it is, shown
beside it. Nothing in a file's metadata ever lowers the pixel verdict.

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
STATUSES = ("declared_ai", "watermarked_ai", "tampered", "trusted_capture", "untrusted_capture", "signed", "none")

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

# The XMP fields read, as regular expressions over the packet's text (no XML
# parser: a packet is untrusted input, and both runtimes must read the same).
# Group 1 is the value, in attribute or element form.
XMP_FIELDS = {
    "xmp:DigitalSourceType": r"Iptc4xmpExt:DigitalSourceType(?:=\"([^\"]{1,300})\"|>([^<]{1,300})<"
                             r"|\s+rdf:resource=\"([^\"]{1,300})\")",
    "xmp:CreatorTool": r"xmp:CreatorTool(?:=\"([^\"]{1,300})\"|>([^<]{1,300})<)",
}

# The card's words: the pixel verdict's stand-in when the file declares AI
# generation, and one line per status ({by}: who declared or signed it).
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
    "trusted_capture": "Content Credentials: captured with {generator}, signed by {by}, signature valid and trusted.",
    "untrusted_capture": "Content Credentials: claims a camera capture ({generator}), signed by {by}, "
                         "signature valid but not trusted. This does not show the photo is real.",
    "signed": "Content Credentials: made with {generator}, signed by {by} ({trust}); it declares no AI generation.",
    "none": "",
}


def source_type_name(value: str) -> str:
    """'trainedAlgorithmicMedia' from the IPTC URI or a bare name."""
    return value.strip().rstrip("/").rsplit("/", 1)[-1]


def generator(texts: dict) -> dict | None:
    """The first known generator whose pattern a field's text matches: {name, field}, or None."""
    for entry in GENERATORS:
        for field in entry["fields"]:
            text = texts.get(field)
            if text and re.search(entry["pattern"], text, re.IGNORECASE):
                return {"name": entry["name"], "field": field}
    return None


def _signer_name(c2pa: dict) -> str:
    signer = c2pa.get("signer") or {}
    return signer.get("organization") or signer.get("common_name") or "an unnamed signer"


def summarise(findings: dict) -> dict:
    """The provenance answer: status, declared_by, generator, c2pa, digital_source_type, watermark, line."""
    c2pa, texts, watermark = findings.get("c2pa"), findings.get("texts") or {}, findings.get("watermark")
    xmp_type = source_type_name(texts["xmp:DigitalSourceType"]) if texts.get("xmp:DigitalSourceType") else None
    named = generator(texts)
    sound = c2pa is not None and c2pa["validation"] in ("valid", "trusted")
    types = [source_type_name(t) for t in c2pa["digital_source_types"]] if sound else []
    declared_by = None
    if sound and any(t in AI_SOURCE_TYPES for t in types):
        status, declared_by = DECLARED_AI, f"Content Credentials signed by {_signer_name(c2pa)}"
    elif xmp_type in AI_SOURCE_TYPES:
        status, declared_by = DECLARED_AI, f"its XMP metadata (DigitalSourceType {xmp_type})"
    elif named is not None:
        status, declared_by = DECLARED_AI, f"{named['name']} metadata ({named['field']})"
    elif watermark is not None:
        status, declared_by = WATERMARKED_AI, f"an invisible {watermark['name']} watermark"
    elif c2pa is not None and not sound:
        status = "tampered"
    elif sound and any(t in CAPTURE_SOURCE_TYPES for t in types):
        status = "trusted_capture" if c2pa["validation"] == "trusted" else "untrusted_capture"
    elif sound:
        status = "signed"
    else:
        status = "none"
    fields = {
        "by": declared_by or (_signer_name(c2pa) if c2pa else ""),
        "problems": ", ".join((c2pa or {}).get("problems") or []) or "unknown",
        "generator": (c2pa or {}).get("claim_generator") or "an unnamed tool",
        "trust": "trusted" if sound and c2pa["validation"] == "trusted" else "not trusted",
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
        "xmp_fields": XMP_FIELDS,
        "declared_words": DECLARED_WORDS,
        "lines": LINES,
    }


def rules_json() -> str:
    return json.dumps(rules(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m aiface.provenance_rule OUT.json")
    Path(sys.argv[1]).write_text(rules_json(), encoding="utf-8")
