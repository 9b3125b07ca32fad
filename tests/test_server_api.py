"""The detection API through Flask's test client: every endpoint and every error."""

from __future__ import annotations

import io
import json
import shutil
import tempfile

import numpy as np
import pytest
from PIL import Image

from aiface.bundle import metadata_path
from aiface.preprocess import composite_on_white
from aiface.verdict import verdict
from helpers import encode, face_like
from server import create_app
from server.exceptions import InferenceTimeout


def detect_raw(client, data: bytes, content_type: str = "image/png"):
    return client.post("/v1/detect", data=data, content_type=content_type)


def probability(client, data: bytes) -> float:
    response = detect_raw(client, data)
    assert response.status_code == 200, response.json
    return response.json["probability_fake"]


def photo(seed: int = 3, height: int = 48, width: int = 64) -> np.ndarray:
    """Non-square and asymmetric, so a wrong crop or rotation changes the score."""
    return np.asarray(Image.fromarray(face_like(seed, size=64)).resize((width, height)))


# --- POST /v1/detect --------------------------------------------------------


def test_detect_raw_bytes_returns_the_documented_result(client, tiny_model_path):
    response = detect_raw(client, encode(photo()))
    assert response.status_code == 200
    body = response.json
    assert set(body) == {"probability_fake", "label", "verdict", "threshold", "model", "elapsed_ms", "image", "faces",
                         "scored", "provenance"}
    assert body["provenance"]["status"] == "none"
    assert 0.0 <= body["probability_fake"] <= 1.0
    assert body["label"] == ("fake" if body["probability_fake"] >= body["threshold"] else "real")
    assert body["verdict"] == verdict(body["probability_fake"], body["threshold"])
    assert body["model"] == {"name": "tiny-test", "version": "0.0.1", "backbone": "tiny"}
    assert body["image"] == {"width": 64, "height": 48}
    assert body["elapsed_ms"] > 0


def test_detect_multipart_gives_the_same_score_as_raw_bytes(client):
    data = encode(photo(), "JPEG", quality=90)
    response = client.post("/v1/detect", data={"image": (io.BytesIO(data), "face.jpg")})
    assert response.status_code == 200
    assert response.json["probability_fake"] == pytest.approx(probability(client, data), abs=1e-6)


def test_score_matches_the_model_on_shared_preprocessing(client, app):
    from aiface.preprocess import preprocess

    data = encode(photo(seed=5))
    bundle = app.extensions["aiface_detector"].bundle
    expected = bundle.predict_fake(preprocess(data, bundle.metadata.image_size)[None])[0]
    assert probability(client, data) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("threshold, label", [(0.0, "fake"), (1.0, "real")])
def test_label_follows_the_model_threshold(tiny_model_path, tmp_path, threshold, label):
    model = tmp_path / "m.keras"
    shutil.copy(tiny_model_path, model)
    metadata = json.loads(metadata_path(tiny_model_path).read_text())
    metadata_path(model).write_text(json.dumps({**metadata, "threshold": threshold}))
    response = detect_raw(create_app({"MODEL_PATH": str(model)}).test_client(), encode(photo()))
    assert response.json["label"] == label
    assert response.json["verdict"] == verdict(response.json["probability_fake"], threshold)
    assert (response.json["verdict"] == "likely_ai") == (label == "fake")
    assert response.json["threshold"] == threshold


# --- image formats are scored as their 8-bit RGB equivalent ---------------


def test_exif_rotated_image_scores_as_its_upright_version(client):
    upright = photo()
    stored = np.rot90(upright, k=1).copy()  # a camera's sensor orientation
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view": undoes rot90(k=1)
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, "PNG", exif=exif)
    rotated = probability(client, buffer.getvalue())
    assert rotated == pytest.approx(probability(client, encode(upright)), abs=1e-6)
    assert abs(rotated - probability(client, encode(stored))) > 1e-5


def test_alpha_image_scores_as_composited_on_white(client):
    rgb = photo()
    alpha = np.tile(np.linspace(0, 255, rgb.shape[1]).astype(np.uint8), (rgb.shape[0], 1))
    rgba = np.dstack([rgb, alpha])
    with_alpha = probability(client, encode(rgba))
    assert with_alpha == pytest.approx(probability(client, encode(composite_on_white(rgba))), abs=1e-6)
    assert abs(with_alpha - probability(client, encode(rgb))) > 1e-5


def test_palette_image_scores_as_its_rgb_expansion(client):
    palette = Image.fromarray(photo()).quantize(colors=32)
    expanded = np.asarray(palette.convert("RGB"))
    buffer = io.BytesIO()
    palette.save(buffer, "PNG")
    assert probability(client, buffer.getvalue()) == pytest.approx(probability(client, encode(expanded)), abs=1e-6)


def test_cmyk_jpeg_scores_as_its_rgb_conversion(client):
    buffer = io.BytesIO()
    Image.fromarray(photo()).convert("CMYK").save(buffer, "JPEG", quality=95)
    converted = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    assert probability(client, buffer.getvalue()) == pytest.approx(probability(client, encode(converted)), abs=1e-6)


def test_16_bit_image_scores_as_its_high_byte(client):
    gray8 = np.asarray(Image.fromarray(photo()).convert("L"))
    gray16 = gray8.astype(np.uint16) * 257  # the full 16-bit range, high byte = gray8
    buffer = io.BytesIO()
    Image.fromarray(gray16).save(buffer, "PNG")
    assert Image.open(io.BytesIO(buffer.getvalue())).mode.startswith("I")
    expected = probability(client, encode(np.repeat(gray8[:, :, None], 3, axis=2)))
    assert probability(client, buffer.getvalue()) == pytest.approx(expected, abs=1e-6)


def test_grayscale_image_scores_as_its_rgb_expansion(client):
    gray = np.asarray(Image.fromarray(photo()).convert("L"))
    expected = probability(client, encode(np.repeat(gray[:, :, None], 3, axis=2)))
    assert probability(client, encode(gray)) == pytest.approx(expected, abs=1e-6)


# --- bad input ---------------------------------------------------------------


def test_truncated_image_is_a_400_naming_the_problem(client):
    data = encode(photo(), "JPEG")
    response = detect_raw(client, data[: len(data) // 2], "image/jpeg")
    assert response.status_code == 400
    assert response.json["error"]["code"] == "corrupt"
    assert "truncated" in response.json["error"]["message"]


def test_non_image_is_a_400(client):
    response = detect_raw(client, b"%PDF-1.4 definitely not a picture", "image/jpeg")
    assert response.status_code == 400
    assert response.json["error"]["code"] == "not_image"


def test_tiny_image_is_a_400(client):
    response = detect_raw(client, encode(face_like(1, size=16)))
    assert response.status_code == 400
    assert response.json["error"]["code"] == "too_small"


def test_empty_body_is_a_400(client):
    response = detect_raw(client, b"")
    assert response.status_code == 400
    assert response.json["error"]["code"] == "not_image"


def test_decompression_bomb_is_a_413(client):
    # 8000 x 8000 pixels of one colour: 64 megapixels in about 60 KB of PNG.
    buffer = io.BytesIO()
    Image.new("L", (8000, 8000)).save(buffer, "PNG")
    assert len(buffer.getvalue()) < 200_000
    response = detect_raw(client, buffer.getvalue())
    assert response.status_code == 413
    assert response.json["error"]["code"] == "too_large"
    assert "8000x8000" in response.json["error"]["message"]


def test_body_over_max_content_length_is_a_413(tiny_model_path):
    client = create_app({"MODEL_PATH": str(tiny_model_path), "MAX_CONTENT_LENGTH": 1000}).test_client()
    data = encode(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    assert len(data) > 1000
    raw = detect_raw(client, data)
    multipart = client.post("/v1/detect", data={"image": (io.BytesIO(data), "a.png")})
    for response in (raw, multipart):
        assert response.status_code == 413
        assert response.json["error"]["code"] == "request_entity_too_large"


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "application/octet-stream", None])
def test_unsupported_content_type_is_a_415(client, content_type):
    response = client.post("/v1/detect", data=encode(photo()), content_type=content_type)
    assert response.status_code == 415
    assert response.json["error"]["code"] == "unsupported_media_type"


def test_multipart_without_image_field_is_a_400(client):
    # A URL in a form field is not fetched: the service never requests anything.
    response = client.post("/v1/detect", data={"url": "http://169.254.169.254/latest/meta-data"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert response.json["error"]["code"] == "missing_image"


def test_two_images_on_the_single_endpoint_is_a_400(client):
    data = encode(photo())
    response = client.post("/v1/detect", data={"image": [(io.BytesIO(data), "a.png"), (io.BytesIO(data), "b.png")]})
    assert response.status_code == 400
    assert response.json["error"]["code"] == "too_many_images"


def test_large_upload_is_never_written_to_disk(client, monkeypatch):
    # Werkzeug would spool a file part over 500 KB to a temporary file.
    def refuse(*args, **kwargs):
        raise AssertionError("an upload was about to be written to disk")

    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", refuse)
    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    data = encode(np.random.default_rng(1).integers(0, 256, (512, 512, 3), dtype=np.uint8))
    assert len(data) > 600_000
    response = client.post("/v1/detect", data={"image": (io.BytesIO(data), "big.png")})
    assert response.status_code == 200


# --- POST /v1/detect/batch ---------------------------------------------------


def test_batch_scores_in_order_and_isolates_a_bad_image(client):
    first, second = encode(photo(seed=1)), encode(photo(seed=2), "JPEG", quality=90)
    files = [(io.BytesIO(first), "1.png"), (io.BytesIO(b"not an image"), "2.png"), (io.BytesIO(second), "3.jpg")]
    response = client.post("/v1/detect/batch", data={"image": files})
    assert response.status_code == 200
    results = response.json["results"]
    assert len(results) == 3
    assert results[0]["probability_fake"] == pytest.approx(probability(client, first), abs=1e-6)
    assert results[1] == {
        "error": {"code": "not_image", "message": "not an image in a format we can read"},
        "status": 400,
    }
    assert results[2]["probability_fake"] == pytest.approx(probability(client, second), abs=1e-6)


def test_batch_over_the_image_limit_is_a_413(tiny_model_path):
    client = create_app({"MODEL_PATH": str(tiny_model_path), "MAX_BATCH_IMAGES": 2}).test_client()
    data = encode(photo())
    response = client.post("/v1/detect/batch", data={"image": [(io.BytesIO(data), f"{i}.png") for i in range(3)]})
    assert response.status_code == 413
    assert response.json["error"]["code"] == "too_many_images"


def test_a_batch_of_more_parts_than_the_form_parser_reads_says_so(client):
    data = encode(photo())
    response = client.post("/v1/detect/batch", data={"image": [(io.BytesIO(data), f"{i}.png") for i in range(1001)]})
    assert response.status_code == 413, response.json
    assert response.json["error"] == {"code": "too_many_images",
                                      "message": "1,001 form parts sent; at most 16 images per request"}


def test_batch_needs_multipart(client):
    response = client.post("/v1/detect/batch", data=encode(photo()), content_type="image/png")
    assert response.status_code == 415


def test_batch_without_images_is_a_400(client):
    response = client.post("/v1/detect/batch", data={"other": "x"}, content_type="multipart/form-data")
    assert response.status_code == 400
    assert response.json["error"]["code"] == "missing_image"


# --- GET endpoints and generic errors ----------------------------------------


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "model": {"name": "tiny-test", "version": "0.0.1"}}


def test_healthz_is_a_503_when_inference_has_stopped(app, monkeypatch):
    monkeypatch.setattr(app.extensions["aiface_detector"]._batcher, "healthy", lambda: False)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["error"] == {"code": "unhealthy", "message": "the inference thread has stopped"}


def test_model_card_reports_metadata_and_metrics(tiny_model_path, tmp_path):
    model = tmp_path / "m.keras"
    shutil.copy(tiny_model_path, model)
    metadata = json.loads(metadata_path(tiny_model_path).read_text())
    metrics = {"auc": 0.97, "tpr_at_target_fpr": 0.81}
    metadata_path(model).write_text(json.dumps({**metadata, "temperature": 1.7, "threshold": 0.62, "metrics": metrics}))
    body = create_app({"MODEL_PATH": str(model)}).test_client().get("/v1/model").json
    assert body["backbone"] == "tiny"
    assert body["input_size"] == 32
    assert "centred square" in body["preprocessing"]
    assert body["temperature"] == 1.7
    assert body["threshold"] == 0.62
    assert body["metrics"] == metrics


def test_openapi_document_covers_every_route(client, app):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json
    assert document["openapi"].startswith("3.")
    routes = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    assert routes == set(document["paths"])


def test_unknown_path_and_wrong_method_are_json(client):
    assert client.get("/v1/nothing").json["error"]["code"] == "not_found"
    response = client.get("/v1/detect")
    assert response.status_code == 405
    assert response.json["error"]["code"] == "method_not_allowed"


def test_unexpected_failure_is_a_json_500_without_details(app, monkeypatch):
    detector = app.extensions["aiface_detector"]
    monkeypatch.setattr(detector, "detect_many", lambda uploads: 1 / 0)
    response = detect_raw(app.test_client(), encode(photo()))
    assert response.status_code == 500
    assert response.json == {"error": {"code": "internal_error", "message": "the server failed to handle this request"}}


def test_inference_timeout_is_a_503(app, monkeypatch):
    def overloaded(uploads):
        raise InferenceTimeout("the model did not answer within 30 s")

    monkeypatch.setattr(app.extensions["aiface_detector"], "detect_many", overloaded)
    response = detect_raw(app.test_client(), encode(photo()))
    assert response.status_code == 503
    assert response.json["error"]["code"] == "overloaded"
