"""Every error the service returns is JSON: ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import functools

from flask import Flask, current_app, jsonify
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from aiface.preprocess import ImageError
from server.exceptions import ApiError, BackendUnavailable, Busy, InferenceTimeout, QueueFull, too_large_message

# Every ImageError code is the client's fault; only its size problem is not a 400.
IMAGE_ERROR_STATUS = {"too_large": 413}
# Transient conditions: each is a 503 with this code and a Retry-After header.
UNAVAILABLE = {
    Busy: "overloaded",
    QueueFull: "overloaded",
    InferenceTimeout: "overloaded",
    BackendUnavailable: "backend_unavailable",
}
RETRY_AFTER_S = 1
# What clients are told when the model backend fails; the details (its
# address, the socket error) go to the server's log only.
BACKEND_MESSAGE = "the model backend is unavailable; retry shortly"


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def image_error_status(error: ImageError) -> int:
    return IMAGE_ERROR_STATUS.get(error.code, 400)


def _unavailable(code: str, error: Exception):
    message = str(error)
    if isinstance(error, BackendUnavailable):
        current_app.logger.warning("model backend unavailable: %s", error)
        message = BACKEND_MESSAGE
    return jsonify(error_body(code, message)), 503, {"Retry-After": str(RETRY_AFTER_S)}


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return jsonify(error_body(error.code, error.message)), error.status, error.headers

    @app.errorhandler(ImageError)
    def _image_error(error: ImageError):
        return jsonify(error_body(error.code, str(error))), image_error_status(error)

    for exception, code in UNAVAILABLE.items():
        app.register_error_handler(exception, functools.partial(_unavailable, code))

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        message = error.description or error.name
        if isinstance(error, RequestEntityTooLarge):
            message = too_large_message(current_app.config["MAX_CONTENT_LENGTH"])
        response = jsonify(error_body(code, message))
        response.status_code = error.code or 500
        # Keeps the headers the error carries, such as a 405's Allow (RFC 9110).
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        current_app.logger.exception("unhandled error")
        return jsonify(error_body("internal_error", "the server failed to handle this request")), 500
