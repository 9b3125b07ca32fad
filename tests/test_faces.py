"""Faces are found and scored one by one; explanations are Grad-CAM overlays of the deciding region.

``data/astronaut_face.jpg`` is a 170 x 195 crop of scikit-image's
``data.astronaut()`` (Eileen Collins, NASA: public domain); her face spans
x 40-125, y 42-153 in it.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import encode, face_like
from aiface.bundle import load_bundle
from aiface.explain import GradCam, render_png
from aiface.faces import FACE_FRACTION, Box, crop, crop_box, default_finder, iou
from aiface.preprocess import to_model_input
from server import create_app

FACE = np.asarray(Image.open(Path(__file__).parent / "data" / "astronaut_face.jpg").convert("RGB"))
FACE_IN_CROP = Box(40, 42, 85, 111)
PASTED_AT = (400, 200)  # x, y of the crop in the scene
EXPECTED_FACE = Box(PASTED_AT[0] + FACE_IN_CROP.x, PASTED_AT[1] + FACE_IN_CROP.y, FACE_IN_CROP.width, FACE_IN_CROP.height)


def scene() -> np.ndarray:
    """A 640 x 480 colour gradient with the astronaut's face pasted at PASTED_AT."""
    y, x = np.mgrid[0:480, 0:640]
    pixels = np.stack([x * 255 / 640, y * 255 / 480, np.full(x.shape, 128)], axis=-1).astype(np.uint8)
    left, top = PASTED_AT
    pixels[top : top + FACE.shape[0], left : left + FACE.shape[1]] = FACE
    return pixels


def box_of(body: dict) -> Box:
    return Box(**body)


def detect(client, pixels: np.ndarray, query: str = ""):
    return client.post("/v1/detect" + query, data=encode(pixels), content_type="image/png")


# --- finding and cropping ---------------------------------------------------


def test_the_face_in_a_scene_is_found_where_it_was_put():
    faces = default_finder().find(scene())
    assert len(faces) == 1
    assert iou(faces[0].box, EXPECTED_FACE) > 0.7
    assert faces[0].score > 0.9


def test_a_picture_without_a_face_has_none():
    assert default_finder().find(face_like(5, size=256)) == []


def test_crop_is_framed_like_the_training_images():
    box = crop_box(Box(300, 200, 100, 130), width=1000, height=800)
    assert box.width == box.height == round(130 / FACE_FRACTION)
    # Face centred horizontally, a little below the crop's centre.
    assert abs(box.x + box.width / 2 - 350) <= 1
    assert 0 < (200 + 65) - (box.y + box.height / 2) < 0.1 * box.height


def test_crop_stays_inside_the_image():
    near_corner = crop_box(Box(0, 0, 60, 80), width=400, height=300)
    assert (near_corner.x, near_corner.y) == (0, 0)
    too_big = crop_box(Box(10, 5, 280, 290), width=400, height=300)
    assert too_big == Box(too_big.x, 0, 300, 300)
    assert 0 <= too_big.x <= 100


# --- the API ----------------------------------------------------------------


def test_faces_are_scored_and_the_verdict_is_their_score(client, tiny_model_path):
    body = detect(client, scene()).json
    assert body["scored"] == "faces"
    assert len(body["faces"]) == 1
    face = body["faces"][0]
    assert iou(box_of(face["box"]), EXPECTED_FACE) > 0.7
    bundle = load_bundle(tiny_model_path)
    expected = bundle.predict_fake(to_model_input(crop(scene(), crop_box(box_of(face["box"]), 640, 480)), 32)[None])[0]
    assert face["probability_fake"] == pytest.approx(expected, abs=1e-6)
    assert body["probability_fake"] == face["probability_fake"]
    assert body["image"] == {"width": 640, "height": 480}


def test_no_face_says_so_and_scores_the_whole_image(client, tiny_model_path):
    pixels = face_like(7, size=96)
    body = detect(client, pixels).json
    assert body["scored"] == "whole_image"
    assert body["faces"] == []
    expected = load_bundle(tiny_model_path).predict_fake(to_model_input(pixels, 32)[None])[0]
    assert body["probability_fake"] == pytest.approx(expected, abs=1e-6)


def test_face_detection_can_be_switched_off(tiny_model_path):
    app = create_app({"MODEL_PATH": str(tiny_model_path), "FACE_DETECTION": False})
    body = detect(app.test_client(), scene()).json
    assert (body["scored"], body["faces"]) == ("whole_image", [])


# --- explanations -----------------------------------------------------------


def explanation_image(explanation: dict) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(explanation["png_base64"])))


def test_explanation_covers_the_scored_face_crop_and_is_deterministic(client):
    first = detect(client, scene(), "?explain=1").json
    second = detect(client, scene(), "?explain=1").json
    explanation = first["explanation"]
    assert explanation == second["explanation"]
    crop_region = crop_box(box_of(first["faces"][0]["box"]), 640, 480)
    assert box_of(explanation["box"]) == crop_region
    image = explanation_image(explanation)
    assert image.mode == "RGBA"
    assert image.size == (explanation["width"], explanation["height"]) == (crop_region.width, crop_region.height)


def test_explanation_of_a_faceless_image_covers_its_centre_square(client):
    body = detect(client, face_like(8, size=96)[:60], "?explain=1").json
    assert body["scored"] == "whole_image"
    assert body["explanation"]["box"] == {"x": 18, "y": 0, "width": 60, "height": 60}
    assert explanation_image(body["explanation"]).size == (60, 60)


def test_no_explanation_unless_asked(client):
    assert "explanation" not in detect(client, scene()).json
    assert "explanation" not in detect(client, scene(), "?explain=0").json


def test_a_bad_explain_value_is_a_400(client):
    response = detect(client, scene(), "?explain=maybe")
    assert response.status_code == 400
    assert response.json["error"]["code"] == "bad_parameter"


def test_heatmap_is_at_the_feature_maps_resolution_in_0_1(tiny_model_path):
    heatmap = GradCam(load_bundle(tiny_model_path).model).heatmap(to_model_input(FACE, 32), fake=True)
    assert heatmap.shape == (16, 16)  # the finest map the head pools, the tiny base's first block: 32 px / 2
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0


def test_overlay_is_transparent_without_evidence_and_most_opaque_at_the_peak():
    heatmap = np.zeros((4, 4), np.float32)
    heatmap[1, 2] = 1.0
    overlay = np.asarray(Image.open(io.BytesIO(render_png(heatmap, 40, 40))))
    assert overlay.shape == (40, 40, 4)
    alpha = overlay[:, :, 3]
    assert alpha[35, 5] == 0
    assert np.unravel_index(np.argmax(alpha), alpha.shape) in {(y, x) for y in (14, 15) for x in (24, 25)}
    assert alpha.max() <= 153  # MAX_ALPHA 0.6 of 255: the photo stays visible under it


def test_explain_without_a_local_model_is_a_501(app, monkeypatch):
    # As with MODEL_BACKEND=tfserving: the model runs elsewhere, there is no gradient to take here.
    monkeypatch.setattr(app.extensions["aiface_detector"], "_gradcam", None)
    response = detect(app.test_client(), scene(), "?explain=1")
    assert response.status_code == 501
    assert response.json["error"]["code"] == "explanation_unavailable"
