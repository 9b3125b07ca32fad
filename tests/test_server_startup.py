"""Start-up: configuration sources, model loading failures, CORS, the real process."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from flask import Flask

import server
from helpers import encode, face_like, free_port, wait_for
from server import StartupError, create_app
from server.config import DEFAULTS

REPO = Path(__file__).resolve().parents[1]
EXTENSION = "chrome-extension://abcdefghijklmnopabcdefghijklmnop"


def test_missing_model_stops_start_up_with_a_clear_message(tmp_path):
    missing = tmp_path / "nowhere" / "model.keras"
    with pytest.raises(StartupError, match=f"model file {missing} does not exist.*Set MODEL_PATH"):
        create_app({"MODEL_PATH": str(missing)})


def test_corrupt_model_stops_start_up_with_a_clear_message(tiny_model_path, tmp_path):
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"PK\x03\x04 this is not a keras archive")
    broken.with_suffix(".json").write_text(tiny_model_path.with_suffix(".json").read_text())
    with pytest.raises(StartupError, match="corrupt or not a Keras model"):
        create_app({"MODEL_PATH": str(broken)})


def test_model_without_metadata_stops_start_up(tiny_model_path, tmp_path):
    lonely = tmp_path / "lonely.keras"
    lonely.write_bytes(tiny_model_path.read_bytes())
    with pytest.raises(StartupError, match="metadata .*lonely.json does not exist"):
        create_app({"MODEL_PATH": str(lonely)})


def test_default_model_path_is_the_bundled_model():
    assert Path(DEFAULTS["MODEL_PATH"]) == REPO / "server" / "model" / "aiface.keras"


def test_environment_plain_and_prefixed_names(tiny_model_path, monkeypatch, tmp_path):
    monkeypatch.setattr(server, "Flask", functools.partial(Flask, instance_path=str(tmp_path)))
    monkeypatch.setenv("MODEL_PATH", str(tiny_model_path))
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "12345")
    monkeypatch.setenv("AIFACE_MAX_CONTENT_LENGTH", "54321")  # the prefixed name wins
    monkeypatch.setenv("ALLOWED_ORIGINS", f"{EXTENSION}, chrome-extension://other")
    monkeypatch.setenv("AIFACE_MAX_IMAGE_PIXELS", "1000000")
    app = create_app()
    assert app.config["MAX_CONTENT_LENGTH"] == 54321
    assert app.config["MAX_IMAGE_PIXELS"] == 1_000_000
    assert app.config["ALLOWED_ORIGINS"] == [EXTENSION, "chrome-extension://other"]


def test_instance_file_is_read_and_environment_overrides_it(tiny_model_path, monkeypatch, tmp_path):
    monkeypatch.setattr(server, "Flask", functools.partial(Flask, instance_path=str(tmp_path)))
    (tmp_path / "config.py").write_text(
        f"MODEL_PATH = {str(tiny_model_path)!r}\nMAX_CONTENT_LENGTH = 777\nMAX_BATCH_IMAGES = 3\n"
    )
    monkeypatch.setenv("MAX_BATCH_IMAGES", "5")
    app = create_app()
    assert app.config["MAX_CONTENT_LENGTH"] == 777
    assert app.config["MAX_BATCH_IMAGES"] == 5


def test_unparseable_environment_value_stops_start_up(monkeypatch, tmp_path):
    monkeypatch.setattr(server, "Flask", functools.partial(Flask, instance_path=str(tmp_path)))
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "ten megabytes")
    with pytest.raises(StartupError, match="MAX_CONTENT_LENGTH"):
        create_app()


def test_cors_only_for_configured_origins(tiny_model_path):
    allowed = create_app({"MODEL_PATH": str(tiny_model_path), "ALLOWED_ORIGINS": EXTENSION}).test_client()
    ok = allowed.get("/healthz", headers={"Origin": EXTENSION})
    assert ok.headers["Access-Control-Allow-Origin"] == EXTENSION
    preflight = allowed.options(
        "/v1/detect", headers={"Origin": EXTENSION, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == EXTENSION
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    other = allowed.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_no_cors_by_default(tiny_model_path):
    client = create_app({"MODEL_PATH": str(tiny_model_path)}).test_client()
    response = client.get("/healthz", headers={"Origin": EXTENSION})
    assert "Access-Control-Allow-Origin" not in response.headers


def start_flask(model_path: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "MODEL_PATH": str(model_path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "server", "run", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until_healthy(process: subprocess.Popen, url: str, deadline_s: float = 90.0) -> dict:
    def health():
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.load(response)

    return wait_for(health, "a healthy server", process, deadline_s)


@pytest.mark.process
@pytest.mark.slow
def test_real_server_process_answers_over_http(tiny_model_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_flask(tiny_model_path, port)
    try:
        assert wait_until_healthy(process, f"{base}/healthz")["status"] == "ok"
        request = urllib.request.Request(
            f"{base}/v1/detect", data=encode(face_like(7)), headers={"Content-Type": "image/png"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.load(response)
        assert 0.0 <= body["probability_fake"] <= 1.0
        assert body["model"]["name"] == "tiny-test"
        bad = urllib.request.Request(f"{base}/v1/detect", data=b"nope", headers={"Content-Type": "text/plain"})
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(bad, timeout=30)
        assert error.value.code == 415
        assert json.load(error.value)["error"]["code"] == "unsupported_media_type"
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stdout.close()


@pytest.mark.process
@pytest.mark.slow
def test_real_server_process_refuses_to_start_without_a_model(tmp_path):
    missing = tmp_path / "absent.keras"
    process = start_flask(missing, free_port())
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode != 0
    assert f"cannot start the detection service: model file {missing} does not exist" in output
