"""The detection service: ``flask --app server run``.

``create_app`` loads the model once, when the app is made, so that a missing
or broken model stops start-up instead of failing the first request.
"""

from __future__ import annotations

import io

# TensorFlow's logging is set up where it loads (aiface.bundle.load_bundle, through aiface.quiet).
import click
from flask import Flask, Request, g
from flask_cors import CORS

from aiface.bundle import ModelLoadError
from server import admission, errors, keys
from server import config as settings
from server.api import EXTENSION_KEY, bp
from server.detector import Detector


class StartupError(click.ClickException):
    """The service cannot start; the message says what to fix.

    A ClickException, so that ``flask run`` prints it as one line and exits
    with status 1 instead of showing a traceback.
    """


class InMemoryRequest(Request):
    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        # Werkzeug spools uploads over 500 KB to a temporary file; we never
        # store an upload, and MAX_CONTENT_LENGTH bounds the memory this takes.
        return io.BytesIO()


def _configure(app: Flask, test_config: dict | None) -> None:
    app.config.from_mapping(settings.DEFAULTS)
    try:
        if test_config is None:
            app.config.from_pyfile("config.py", silent=True)
            app.config.update(settings.from_environment())
        else:
            app.config.from_mapping(test_config)
        settings.normalise(app.config)
    except settings.ConfigError as error:
        raise StartupError(f"cannot start the detection service: {error}") from None


def check_settings() -> str | None:
    """What is wrong with the settings from the instance file and the environment, or None.

    For gunicorn's master (server/gunicorn_conf.py), before any worker loads the model.
    """
    try:
        _configure(Flask(__name__, instance_relative_config=True), None)
    except StartupError as error:
        return error.message
    return None


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.request_class = InMemoryRequest
    _configure(app, test_config)

    try:
        app.extensions[EXTENSION_KEY] = Detector.from_config(app.config)
    except ModelLoadError as error:
        raise StartupError(
            f"cannot start the detection service: {error}. Set MODEL_PATH to a model "
            f"saved by the training package (NAME.keras with NAME.json beside it)."
        ) from None

    if app.config["ALLOWED_ORIGINS"]:
        CORS(app, origins=app.config["ALLOWED_ORIGINS"], methods=["GET", "POST"])
    errors.register(app)
    keys.register(app)  # before admission: an unknown caller's body is never read
    admission.register(app)
    app.register_blueprint(bp)
    app.after_request(_protective_headers)
    return app


def _protective_headers(response):
    # Browsers must not guess another type than JSON, and no cache may keep a
    # verdict (or an error) on someone's upload.
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("Cache-Control", "no-store")
    if g.get("close_connection"):  # a body refused half-read (server/body.py)
        response.headers["Connection"] = "close"
    return response
