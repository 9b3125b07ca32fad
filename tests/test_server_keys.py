"""API keys: API_KEYS_FILE lists SHA-256 digests; /v1/ needs a Bearer key, each key has a request rate."""

from __future__ import annotations

import hashlib
import logging
import os

import pytest

from helpers import encode, face_like
from server import StartupError, create_app

KEY, OTHER = "k3y-for-tests-0123456789abcdef", "another-key-for-tests-fedcba9876"


def listing(*keys: str) -> str:
    return "# digests of the API keys\n" + "".join(hashlib.sha256(key.encode()).hexdigest() + "\n" for key in keys)


@pytest.fixture
def keys_file(tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text(listing(KEY))
    return path


def keyed_client(model_path, keys_file, **settings):
    config = {"MODEL_PATH": str(model_path), "API_KEYS_FILE": str(keys_file), **settings}
    return create_app(config).test_client()


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def photo() -> bytes:
    return encode(face_like(3))


def test_without_a_keys_file_the_service_is_open_as_before(client, photo):
    assert client.post("/v1/detect", data=photo, content_type="image/png").status_code == 200
    assert client.post("/v1/detect", data=photo, content_type="image/png", headers=bearer("x")).status_code == 200


def test_v1_needs_a_known_key_and_health_and_the_document_stay_open(tiny_model_path, keys_file, photo):
    client = keyed_client(tiny_model_path, keys_file)
    for headers in ({}, bearer(OTHER), {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"}):
        response = client.post("/v1/detect", data=photo, content_type="image/png", headers=headers)
        assert response.status_code == 401, headers
        assert response.json["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="aiface"'
        assert response.headers["Connection"] == "close"  # the body was never read
    assert client.get("/v1/model").status_code == 401
    assert client.post("/v1/detect", data=photo, content_type="image/png", headers=bearer(KEY)).status_code == 200
    assert client.get("/v1/model", headers=bearer(KEY)).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_keys_are_picked_up_again_when_the_file_changes(tiny_model_path, keys_file):
    client = keyed_client(tiny_model_path, keys_file)
    assert client.get("/v1/model", headers=bearer(KEY)).status_code == 200
    # Rotation: the new key's digest is added, then the old one removed (a new file moved in place).
    replacement = keys_file.with_suffix(".new")
    replacement.write_text(listing(KEY, OTHER))
    os.replace(replacement, keys_file)
    assert client.get("/v1/model", headers=bearer(OTHER)).status_code == 200
    keys_file.write_text(listing(OTHER) + "# the old key revoked\n")
    assert client.get("/v1/model", headers=bearer(KEY)).status_code == 401
    assert client.get("/v1/model", headers=bearer(OTHER)).status_code == 200


def test_a_broken_file_later_keeps_the_keys_read_before(tiny_model_path, keys_file, caplog):
    client = keyed_client(tiny_model_path, keys_file)
    keys_file.write_text(listing(KEY) + "not a digest\n")
    with caplog.at_level(logging.ERROR):
        assert client.get("/v1/model", headers=bearer(KEY)).status_code == 200
    assert "line 3: not a SHA-256 hex digest" in caplog.text


def test_each_key_has_its_own_request_rate(tiny_model_path, tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text(listing(KEY, OTHER))
    client = keyed_client(tiny_model_path, path, API_KEY_RATE_PER_MINUTE=2)
    assert [client.get("/v1/model", headers=bearer(KEY)).status_code for _ in range(2)] == [200, 200]
    refused = client.get("/v1/model", headers=bearer(KEY))
    assert refused.status_code == 429 and refused.json["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 30
    assert client.get("/v1/model", headers=bearer(OTHER)).status_code == 200


def test_no_key_or_digest_is_ever_logged(tiny_model_path, keys_file, photo, caplog):
    client = keyed_client(tiny_model_path, keys_file)
    with caplog.at_level(logging.DEBUG):
        for key in (KEY, OTHER):
            client.post("/v1/detect", data=photo, content_type="image/png", headers=bearer(key))
            client.post("/v1/detect", data=b"not an image", content_type="image/png", headers=bearer(key))
    for key in (KEY, OTHER):
        assert key not in caplog.text and hashlib.sha256(key.encode()).hexdigest() not in caplog.text


@pytest.mark.parametrize("content, reason", [
    (None, "cannot read the API keys file"),
    ("abc\n", "line 1: not a SHA-256 hex digest"),
    (KEY + "\n", "line 1: not a SHA-256 hex digest"),  # a key written where its digest belongs
    ("# nothing yet\n", "lists no key"),
])
def test_an_unusable_keys_file_stops_start_up(tiny_model_path, tmp_path, content, reason):
    path = tmp_path / "keys.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(StartupError, match=f"API_KEYS_FILE: .*{reason}"):
        keyed_client(tiny_model_path, path)


def test_the_openapi_document_declares_the_key(client):
    document = client.get("/openapi.json").json
    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]["apiKey"][
            "description"]}
    for path, operations in document["paths"].items():
        for operation in operations.values():
            if path.startswith("/v1/"):
                assert operation["security"] == [{"apiKey": []}, {}] and {"401", "429"} <= set(operation["responses"])
            else:
                assert "security" not in operation
