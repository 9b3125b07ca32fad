"""The HTTP API: detection, model description, health and the OpenAPI document."""

from __future__ import annotations

import base64
import json
from functools import lru_cache
from pathlib import Path

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from aiface.answer import answer, file_provenance
from aiface.preprocess import ImageError
from aiface.provenance import load_trust_anchors
from server.detector import Detection, Detector
from server.errors import error_body, image_error_status
from server.exceptions import ApiError

bp = Blueprint("api", __name__)

OPENAPI_FILE = Path(__file__).parent / "openapi.json"
EXTENSION_KEY = "aiface_detector"


def detector() -> Detector:
    return current_app.extensions[EXTENSION_KEY]


@lru_cache(maxsize=4)
def _trust_anchors(path: str) -> str | None:
    return load_trust_anchors(path)  # checked when the app was made (server.config.normalise)


def _provenance(data: bytes) -> dict:
    """What the upload's own metadata says of its origin (aiface/provenance_rule.py)."""
    # The watermark reader decodes the pixels again: within the same pixel budget as the detection.
    return file_provenance(data, _trust_anchors(current_app.config["TRUST_ANCHORS"]), detector().hold_pixels)


@lru_cache(maxsize=1)
def openapi_document() -> dict:
    return json.loads(OPENAPI_FILE.read_text())


def _result(detection: Detection, provenance: dict) -> dict:
    """The answer (aiface/answer.py, as aiface scan gives it) and how long the service took."""
    return {**answer(detection, provenance, detector().metadata), "elapsed_ms": round(detection.elapsed_ms, 3)}


def _explanation(detection: Detection) -> dict:
    explanation = detector().explain(detection)
    return {
        "png_base64": base64.b64encode(explanation.png).decode("ascii"),
        "box": explanation.box.to_json(),
        "width": explanation.width,
        "height": explanation.height,
    }


def _explain_requested() -> bool:
    value = request.args.get("explain", "0").strip().lower()
    if value not in ("0", "1", "true", "false"):
        raise ApiError(400, "bad_parameter", f"explain must be 0 or 1, got {value!r}")
    if value in ("0", "false"):
        return False
    if not detector().can_explain:
        raise ApiError(
            501,
            "explanation_unavailable",
            "explanations need the model in this process; this service forwards to TensorFlow Serving",
        )
    return True


def _form_over_limits() -> ApiError:
    """Why the form parser gave up on a body within MAX_CONTENT_LENGTH: too many parts, or a big text field."""
    body = request.environ["wsgi.input"].getvalue()  # server.body buffered it
    boundary = request.mimetype_params.get("boundary", "")
    parts = body.count(b"--" + boundary.encode("latin-1")) - 1 if boundary else 0
    if parts > (request.max_form_parts or 0):
        return ApiError(413, "too_many_images", f"{parts:,} form parts sent; at most "
                        f"{current_app.config['MAX_BATCH_IMAGES']} images per request")
    return ApiError(413, "form_field_too_large", f"a form field without a file is over the "
                    f"{request.max_form_memory_size:,} bytes allowed; send images as files")


def _unsupported_type() -> ApiError:
    given = request.mimetype or "none"
    return ApiError(
        415,
        "unsupported_media_type",
        f"send the image as multipart/form-data field 'image' or as raw bytes with an "
        f"image/* Content-Type; got Content-Type {given}",
    )


def _uploads() -> list[bytes]:
    """The uploaded images' bytes, in order; read into memory and never written anywhere."""
    if request.mimetype == "multipart/form-data":
        try:
            files = request.files.getlist("image")
        except RequestEntityTooLarge:
            raise _form_over_limits() from None
        if not files:
            raise ApiError(400, "missing_image", "no multipart field named 'image' in the request")
        return [file.read() for file in files]
    if request.mimetype.startswith("image/"):
        return [request.get_data(cache=False)]
    raise _unsupported_type()


@bp.post("/v1/detect")
def detect():
    uploads = _uploads()
    if len(uploads) > 1:
        raise ApiError(400, "too_many_images", "send one 'image' field here, or use /v1/detect/batch")
    explain = _explain_requested()
    detection = detector().detect(uploads[0])
    result = _result(detection, _provenance(uploads[0]))
    if explain:
        result["explanation"] = _explanation(detection)
    return jsonify(result)


@bp.post("/v1/detect/batch")
def detect_batch():
    if request.mimetype != "multipart/form-data":
        raise _unsupported_type()
    uploads = _uploads()
    limit = current_app.config["MAX_BATCH_IMAGES"]
    if len(uploads) > limit:
        raise ApiError(413, "too_many_images", f"{len(uploads)} images sent; at most {limit} per request")
    results = []
    for data, outcome in zip(uploads, detector().detect_many(uploads), strict=True):
        if isinstance(outcome, ImageError):
            results.append({**error_body(outcome.code, str(outcome)), "status": image_error_status(outcome)})
        else:
            results.append(_result(outcome, _provenance(data)))
    return jsonify({"results": results})


@bp.get("/healthz")
def healthz():
    model = detector()
    problem = model.health_problem()
    if problem is not None:
        return jsonify({**error_body("unhealthy", problem), "status": "error"}), 503
    metadata = model.metadata
    return jsonify({"status": "ok", "model": {"name": metadata.name, "version": metadata.version}})


@bp.get("/v1/model")
def model_card():
    metadata = detector().metadata
    return jsonify(
        {
            "name": metadata.name,
            "version": metadata.version,
            "backbone": metadata.backbone,
            "input_size": metadata.image_size,
            "preprocessing": metadata.preprocessing,
            "temperature": metadata.temperature,
            "threshold": metadata.threshold,
            "target_fpr": metadata.target_fpr,
            "class_names": list(metadata.class_names),
            "metrics": metadata.metrics,
        }
    )


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())
