"""Faces are found and scored one by one; explanations are Grad-CAM overlays of the deciding region.

``data/astronaut_face.jpg`` is a 170 x 195 crop of scikit-image's
``data.astronaut()`` (Eileen Collins, NASA: public domain); her face spans
x 40-125, y 42-153 in it. The detector's port and post-processing are
checked here; that the extension's runs give the same numbers is
``test_extension_faces.py``'s (node) and ``test_face_parity_browser.py``'s
(Chromium).
"""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aiface import faces as faces_module
from aiface.bundle import load_bundle
from aiface.explain import GradCam, render_png
from aiface.faces import (
    ANCHORS,
    CELLS,
    FACE_FRACTION,
    FILL_FRACTION,
    INPUT_SIZE,
    MIN_SCORE,
    Box,
    crop,
    crop_box,
    default_finder,
    detector_input,
    face_config,
    faces_from_output,
    fills_frame,
    iou,
    load_weights,
    placement,
    scored_box,
    whole_image_box,
)
from aiface.preprocess import to_model_input
from helpers import EXPECTED_FACE, FACE, encode, face_filling, face_like, scene, two_faces_scene
from server import create_app


def box_of(body: dict) -> Box:
    return Box(**body)


def detect(client, pixels: np.ndarray, query: str = ""):
    return client.post("/v1/detect" + query, data=encode(pixels), content_type="image/png")


# --- finding and cropping ---------------------------------------------------


def test_the_face_in_a_scene_is_found_where_it_was_put():
    faces = default_finder().find(scene())
    assert len(faces) == 1
    assert iou(faces[0].box, EXPECTED_FACE) > 0.7
    assert faces[0].score > MIN_SCORE


def test_two_faces_are_found_largest_first():
    faces = default_finder().find(two_faces_scene())
    assert len(faces) == 2
    big, small = (face.box for face in faces)
    assert big.width * big.height > small.width * small.height
    assert 470 < big.x < big.x + big.width < 470 + 255 and 60 < small.x < small.x + small.width < 60 + 170


def test_a_face_filling_the_frame_is_found_by_the_border_pass():
    pixels = face_filling()
    first = placement(pixels.shape[1], pixels.shape[0], border=False)
    finder = default_finder()
    assert faces_from_output(finder.output(detector_input(pixels, first)), first, 256, 320) == []
    [face] = finder.find(pixels)
    assert face.box.width > 0.6 * 256 and face.box.height > 0.6 * 320


def test_a_picture_without_a_face_has_none():
    assert default_finder().find(face_like(5, size=256)) == []


def test_the_finder_answers_several_threads_at_once_as_it_answers_one():
    from concurrent.futures import ThreadPoolExecutor

    images = [scene(), two_faces_scene(), face_filling(), face_like(5, size=256)] * 2
    alone = [default_finder().find(pixels) for pixels in images]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(default_finder().find, images)) == alone


def test_the_image_is_fitted_into_the_detector_input_as_documented():
    assert placement(640, 480, border=False) == faces_module.Placement(416, 312, 0, 0, 0)
    # extent 640 + 2 * 320: 208 x 156 in a grey square, centred.
    assert placement(640, 480, border=True) == faces_module.Placement(208, 156, 104, 130, 128)
    assert placement(2, 1000, border=False).width == 1  # never empty
    pixels = face_like(3, size=64)
    image = detector_input(pixels, placement(64, 64, border=True))
    assert image.shape == (INPUT_SIZE, INPUT_SIZE, 3) and image.dtype == np.float32
    # extent 128: 208 px placed at (104, 104), grey around.
    assert (image[:104] == 128).all() and (image[312:] == 128).all() and (image[104:312, 104:312] != 128).any()


def _output_with(*cells) -> np.ndarray:
    """A detector output scoring nothing but the given (row, col, anchor, tx, ty, tw, th, logit) cells."""
    output = np.zeros((CELLS, CELLS, len(ANCHORS), 5), np.float32)
    output[..., 4] = -10.0
    for row, col, anchor, *values in cells:
        output[row, col, anchor] = values
    return output.reshape(CELLS, CELLS, -1)


def test_boxes_are_decoded_and_overlaps_suppressed():
    place = placement(INPUT_SIZE, INPUT_SIZE, border=False)
    # Anchor 1 (6.04 x 7.08 cells) at the centre of cell (6, 6); the same
    # face a little weaker one cell over, suppressed; one far away kept; one
    # below the threshold.
    output = _output_with((6, 6, 1, 0, 0, 0, 0, 3.0), (6, 7, 1, 0, 0, 0, 0, 2.0), (1, 1, 0, 0, 0, 0, 0, 1.0),
                          (10, 2, 0, 0, 0, 0, 0, -0.1))
    faces = faces_from_output(output, place, INPUT_SIZE, INPUT_SIZE)
    sigmoid = lambda logit: 1 / (1 + np.exp(-logit))  # noqa: E731
    assert [face.score for face in faces] == pytest.approx([sigmoid(3.0), sigmoid(1.0)])
    unit = INPUT_SIZE / CELLS
    w, h = ANCHORS[1][0] * unit, ANCHORS[1][1] * unit
    mapping = faces_module.BOX_MAPPING
    centre_y = 6.5 * unit + mapping["centre_y"] * max(w, h)
    expected = Box(round(6.5 * unit - w * mapping["width"] / 2), round(centre_y - h * mapping["height"] / 2),
                   round(w * mapping["width"]), round(h * mapping["height"]))
    assert faces[0].box == expected


# --- the detector's weights and network -------------------------------------


def test_weights_are_face_apis_dequantized_as_tfjs_does():
    weights = load_weights()
    assert len(weights) == 19 and sum(value.size for value in weights.values()) == 193_321
    package = Path(__file__).resolve().parent.parent / "extension" / "node_modules" / "@vladmandic" / "face-api"
    if not package.is_dir():
        pytest.skip("the extension's npm packages are not installed (bash .ci/setup --test)")
    from training.converters.face_detector import read_face_api

    for name, (values, scale, minimum) in read_face_api(package).items():
        np.testing.assert_array_equal(weights[name], (values * scale + minimum).astype(np.float32), err_msg=name)


def test_keras_port_matches_face_apis_forward_pass_written_out_in_numpy():
    from training.converters.face_detector import reference_forward, reference_input

    image = reference_input()
    expected = reference_forward(load_weights(), image)
    np.testing.assert_allclose(default_finder().output(image), expected, atol=1e-4)


def test_the_extension_reads_these_constants():
    committed = Path(__file__).resolve().parent.parent / "extension" / "faces" / "faces.json"
    assert json.loads(committed.read_text()) == face_config(), (
        "extension/faces/faces.json is stale: python -m training.converters.face_detector")


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


def test_a_face_filling_the_frame_is_scored_as_the_whole_square():
    # The detector's box on a face-filling 256 px image is about 0.56 of the side: its crop, 0.78 of the frame.
    face = Box(56, 60, 144, 144)
    crop_region = crop_box(face, 256, 256)
    assert crop_region.width == 200 and fills_frame(crop_region, 256, 256)
    assert scored_box(face, 256, 256) == whole_image_box(256, 256) == Box(0, 0, 256, 256)
    # Not square: the centred square, as aiface.preprocess scores it.
    assert scored_box(Box(40, 90, 160, 170), 256, 320) == Box(0, 32, 256, 256)


def test_a_face_in_a_big_scene_is_cropped_as_before():
    face = Box(300, 200, 100, 130)
    assert scored_box(face, 1000, 800) == crop_box(face, 1000, 800)
    assert not fills_frame(crop_box(face, 1000, 800), 1000, 800)


def test_the_fill_rule_is_on_the_overlap_with_the_centred_square():
    side = 1000
    at_limit = math.ceil(FILL_FRACTION * side)
    assert fills_frame(Box(0, 0, at_limit, at_limit), side, side)
    assert not fills_frame(Box(0, 0, at_limit - 1, at_limit), side, side)
    # A panorama whose face fills its height at one end: the crop lies outside the centred square, kept.
    face = Box(20, 60, 300, 380)
    crop_region = crop_box(face, 2000, 500)
    assert crop_region.width == 500 and not fills_frame(crop_region, 2000, 500)
    assert scored_box(face, 2000, 500) == crop_region
    # The same face in the middle of the panorama: the crop is the centred square.
    centred = Box(850, 60, 300, 380)
    assert scored_box(centred, 2000, 500) == whole_image_box(2000, 500) == Box(750, 0, 500, 500)


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


def test_a_face_filling_image_is_scored_whole_with_its_face_reported(client, tiny_model_path):
    pixels = face_filling()
    body = detect(client, pixels, "?explain=1").json
    assert body["scored"] == "faces" and len(body["faces"]) == 1
    face = box_of(body["faces"][0]["box"])
    whole = whole_image_box(256, 320)
    assert fills_frame(crop_box(face, 256, 320), 256, 320) and face != whole
    # The face box is the detector's; the scored region, and its explanation, the whole centred square.
    assert box_of(body["explanation"]["box"]) == whole
    expected = load_bundle(tiny_model_path).predict_fake(to_model_input(pixels, 32)[None])[0]
    assert body["probability_fake"] == body["faces"][0]["probability_fake"] == pytest.approx(expected, abs=1e-6)


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
