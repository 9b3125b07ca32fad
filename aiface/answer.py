"""The answer about one image: what its pixels score and what the file says of its origin, in one object.

    result = answer(detection, file_provenance(data, trust_anchors), metadata)

``detection`` is ``aiface.pipeline``'s (faces found, each region scored), the
provenance is ``aiface.provenance_rule``'s summary of the file's own metadata,
``metadata`` the model bundle's. The object is the body of the service's
``/v1/detect`` (``server/api.py`` adds only ``elapsed_ms``) and each row of
``aiface scan`` (``aiface/scan.py`` adds ``path``, ``sha256`` and ``error``,
on one machine or on Ray), so the same file gets the same answer from both.
The browser extension builds its answer once too, in ``withProvenance``
(``extension/src/background.js``), from the same rules (``verdict.json``,
``provenance.json``).

Fields: ``probability_fake`` (the pixels' calibrated P(AI-generated)),
``threshold``, ``verdict`` (``aiface.verdict``'s, or ``declared_ai`` when the
file declares AI generation: ``provenance_rule.combine``), ``label`` (``fake``
at or above the threshold or when declared, else ``real``), ``provenance``,
``model`` (name, version, backbone), ``image`` (width, height), ``faces``
(box and probability each) and ``scored`` (``faces`` or ``whole_image``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from aiface.provenance import read_provenance
from aiface.provenance_rule import DECLARED_AI, combine, summarise
from aiface.verdict import verdict

if TYPE_CHECKING:
    from aiface.bundle import Metadata
    from aiface.pipeline import Detection


def file_provenance(data: bytes, trust_anchors: str | None = None,
                    hold: Callable[[int], AbstractContextManager] = nullcontext) -> dict:
    """What a file's bytes say of its origin (``trust_anchors``: PEM text, or None to trust no signer; ``hold``:
    as ``aiface.provenance.read_provenance`` takes it)."""
    return summarise(read_provenance(data, trust_anchors, hold))


def model_of(metadata: Metadata) -> dict:
    """Which model answered: name, version, backbone."""
    return {"name": metadata.name, "version": metadata.version, "backbone": metadata.backbone}


def answer(detection: Detection, provenance: dict, metadata: Metadata) -> dict:
    """The pixels' detection with the file's provenance; a declaration of AI generation makes the verdict."""
    threshold = metadata.threshold
    shown = combine(verdict(detection.probability_fake, threshold), provenance)
    fake = shown == DECLARED_AI or detection.probability_fake >= threshold
    return {
        "probability_fake": detection.probability_fake,
        "label": "fake" if fake else "real",
        "threshold": threshold,
        "verdict": shown,
        "provenance": provenance,
        "model": model_of(metadata),
        "image": {"width": detection.width, "height": detection.height},
        "faces": [{"box": face.box.to_json(), "probability_fake": face.probability_fake}
                  for face in detection.faces],
        "scored": detection.scored,
    }
