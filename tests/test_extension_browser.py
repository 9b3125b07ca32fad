"""The extension in real headless Chromium: one model, two runtimes.

Each module fixture launches Chromium once (extension/test/drive.mjs) and
checks several images on a local page through the service worker's
onContextMenuClick, the function the context-menu item calls.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable

import numpy as np
import pytest
from werkzeug.serving import make_server

from aiface.bundle import Bundle, Metadata, load_bundle, save_bundle
from aiface.faces import Box, crop, crop_box, iou
from aiface.preprocess import preprocess, to_model_input
from aiface.verdict import percent
from helpers import (
    EXPECTED_FACE,
    EXTENSION,
    QUANTIZED_TOLERANCE,
    ROOT,
    SHARED_DATA,
    SHIPPED_KERAS,
    drive,
    encode,
    face_like,
    scene,
    trained_tiny_model,
)
from server import create_app
from training.data.layout import list_split
from training.export_tfjs import export_tfjs

# Each test drives the built extension in headless Chromium.
pytestmark = [pytest.mark.browser, pytest.mark.slow]

# An unquantized conversion runs the same float32 arithmetic in another order.
UNQUANTIZED_TOLERANCE = 1e-3


def serve(app) -> tuple[str, Callable[[], None]]:
    """The detection service on a loopback port, in a thread: its URL and what stops it."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{server.server_port}", server.shutdown


@pytest.fixture(scope="module")
def tiny_run(browser, tmp_path_factory):
    """The tiny model converted without quantization, checked on several images."""
    work = tmp_path_factory.mktemp("extension")
    size = 32
    bundle = Bundle(trained_tiny_model(size), Metadata(backbone="tiny", image_size=size, name="tiny-browser",
                                                       threshold=0.4))
    save_bundle(bundle, work / "tiny.keras")
    export_tfjs(work / "tiny.keras", work / "model", quantize="none")
    site = work / "site"
    site.mkdir()
    faces = [encode(face_like(seed, size=size, fake=seed % 2 == 1)) for seed in (1, 2)]
    for index, png in enumerate(faces):
        (site / f"face{index}.png").write_bytes(png)
    (site / "large.png").write_bytes(encode(face_like(3, size=96)))
    (site / "notimage.png").write_bytes(b"<html>this is not a picture</html>")
    (site / "small.png").write_bytes(encode(face_like(4, size=20)))
    (site / "scene.png").write_bytes(encode(scene()))
    server_on = {"localOnly": False, "serverUrl": "{origin}/", "maxLocalMegapixels": 0.005}
    service, stop_service = serve(create_app({"MODEL_PATH": str(work / "tiny.keras")}))
    checks = [
        {"src": "face0.png"},
        {"src": "face1.png"},
        {"src": "data:image/png;base64," + base64.b64encode(faces[1]).decode()},
        {"src": "missing.png"},
        {"src": "notimage.png"},
        {"src": "small.png"},
        {"src": "large.png", "settings": {**server_on, "localOnly": True}},
        {"src": "large.png", "settings": server_on},
        {"src": "scene.png", "settings": {"localOnly": True, "serverUrl": "", "maxLocalMegapixels": 16}},
        {"src": "scene.png", "settings": {**server_on, "serverUrl": service}, "explain": True},
    ]
    server_answer = {"probability_fake": 0.25, "label": "real", "verdict": "inconclusive", "threshold": 0.5,
                     "model": {"name": "m", "version": "1", "backbone": "tiny"}, "elapsed_ms": 1.0,
                     "image": {"width": 96, "height": 96}, "faces": [], "scored": "whole_image"}
    forms = [
        {"localOnly": True, "serverUrl": "ftp://example.test", "maxLocalMegapixels": 8},
        {"localOnly": True, "serverUrl": "https://example.test:5000", "maxLocalMegapixels": 8, "apiKey": " key-1 "},
        {"localOnly": False, "serverUrl": "http://example.test", "maxLocalMegapixels": 8},
        {"localOnly": True, "serverUrl": "", "maxLocalMegapixels": 0.05},
        {"localOnly": True, "serverUrl": "http://localhost:5000", "maxLocalMegapixels": 0.5},
    ]
    try:
        output = drive(browser, site, checks, modelDir=str(work / "model"), server=server_answer, optionsForms=forms)
    finally:
        stop_service()
    expected = bundle.model.predict(np.stack([preprocess(png, size) for png in faces]), verbose=0)[:, 1]
    names = ["face0", "face1", "data_url", "missing", "not_image", "small", "large_local_only", "large_server",
             "scene", "scene_server"]
    results = dict(zip(names, output["results"], strict=True))
    # The same pixels the browser scored: the crop its face box gives.
    pixels = scene()
    face_box = Box(**results["scene"]["faceBox"])
    face_crop = to_model_input(crop(pixels, crop_box(face_box, pixels.shape[1], pixels.shape[0])), size)
    whole = to_model_input(pixels, size)
    expected_scene = bundle.model.predict(np.stack([face_crop, whole]), verbose=0)[:, 1]
    return results, expected, site, output["options"], expected_scene


def test_verdict_matches_keras_for_unquantized_model(tiny_run):
    results, expected, *_ = tiny_run
    shown = [float(results[name]["attribute"]) for name in ("face0", "face1")]
    assert abs(expected[0] - expected[1]) > 0.1, "the test images should get clearly different probabilities"
    np.testing.assert_allclose(shown, expected, atol=UNQUANTIZED_TOLERANCE)
    verdict = results["face0"]["verdict"]
    assert verdict["where"] == "local" and verdict["timings"]["backend"] == "wasm"
    assert verdict["threshold"] == 0.4
    assert verdict["label"] == ("fake" if verdict["probability"] >= 0.4 else "real")
    assert "Checked in this browser" in results["face0"]["text"]
    assert percent(shown[0]) in results["face0"]["text"]


def test_image_without_a_face_is_scored_whole_and_says_so(tiny_run):
    result = tiny_run[0]["face0"]
    assert result["scored"] == result["verdict"]["scored"] == "whole_image"
    assert result["verdict"]["faces"] == [] and result["faceBox"] is None
    assert "No face found: the whole image was checked" in result["text"]


def test_face_in_a_scene_is_found_and_its_crop_scored_like_keras(tiny_run):
    result, (face_crop, whole) = tiny_run[0]["scene"], tiny_run[4]
    assert result["scored"] == "faces" and len(result["verdict"]["faces"]) == 1
    assert iou(Box(**result["faceBox"]), EXPECTED_FACE) > 0.7
    assert abs(face_crop - whole) > 10 * UNQUANTIZED_TOLERANCE, "the crop should score unlike the whole scene"
    assert float(result["attribute"]) == pytest.approx(face_crop, abs=UNQUANTIZED_TOLERANCE)
    assert "1 face checked" in result["text"]
    assert "Explanations (Why?) need a detection service: set one in the options." in result["text"]
    assert result["explanation"] is None


def test_server_explanation_is_overlaid_on_the_image_and_toggles(tiny_run):
    result = tiny_run[0]["scene_server"]
    verdict, shown = result["verdict"], result["explanation"]
    assert verdict["where"] == "server" and verdict["scored"] == "faces"
    assert "Checked by your detection service" in result["text"] and "1 face checked" in result["text"]
    explanation = verdict["explanation"]
    assert shown["png"] == {"width": explanation["width"], "height": explanation["height"]}
    # The overlay covers explanation.box, scaled from the image's pixels to its size on the page.
    image, natural, box = shown["image"], shown["natural"], explanation["box"]
    scale = image["width"] / natural["width"]
    assert (natural["width"], natural["height"]) == (640, 480) and image["width"] == 200
    np.testing.assert_allclose(
        [shown["overlay"][key] for key in ("left", "top", "width", "height")],
        [
            image["left"] + box["x"] * scale,
            image["top"] + box["y"] * scale,
            box["width"] * scale,
            box["height"] * scale,
        ],
        atol=0.5,
    )
    card = shown["card"]
    assert card["left"] >= image["left"] + image["width"] or card["top"] >= image["top"] + image["height"] \
        or card["left"] + card["width"] <= image["left"], "the card should not hide the map"
    caption = "Where the evidence for this verdict lies — not a map of fake pixels"
    assert [(state["visible"], state["toggle"]) for state in shown["states"]] == [
        (False, "Why?"), (True, "Hide why"), (False, "Why?"), (True, "Hide why")]
    assert caption in shown["states"][1]["text"] and caption not in shown["states"][2]["text"]


def test_data_url_is_checked_like_the_same_file(tiny_run):
    results = tiny_run[0]
    assert results["data_url"]["attribute"] == results["face1"]["attribute"]


@pytest.mark.parametrize("name, code, words", [
    ("missing", "not_found", "404 Not Found"),
    ("not_image", "not_image", "not an image"),
    ("small", "too_small", "20x20 pixels; at least 32 px"),
])
def test_unusable_images_get_a_plain_message(tiny_run, name, code, words):
    result = tiny_run[0][name]
    assert result["attribute"] is None
    assert result["error"] == code == result["verdict"]["error"]
    assert words in result["text"]


def test_large_image_stays_local_in_local_only_mode(tiny_run):
    result = tiny_run[0]["large_local_only"]
    assert result["verdict"]["where"] == "local" and result["attribute"] is not None
    assert "96x96 pixels" in result["text"] and "Local-only mode is on" in result["text"]
    assert "scaled down to 70x70" in result["text"]
    assert result["uploads"] == []


def test_large_image_goes_to_the_server_when_allowed(tiny_run):
    result = tiny_run[0]["large_server"]
    assert len(result["uploads"]) == 1
    assert result["verdict"]["where"] == "server"
    assert float(result["attribute"]) == 0.25
    assert "Checked by your detection service" in result["text"]


def test_shipped_model_matches_keras_within_quantization_cost(browser, tmp_path):
    shipped = json.loads((EXTENSION / "model" / "metadata.json").read_text())
    if not SHIPPED_KERAS.is_file():
        pytest.skip(f"{SHIPPED_KERAS.relative_to(ROOT)} is not there yet; extension/model is a placeholder")
    bundle = load_bundle(SHIPPED_KERAS)
    if (bundle.metadata.name, bundle.metadata.version) != (shipped["name"], shipped["version"]):
        pytest.skip(
            f"extension/model holds {shipped['name']} {shipped['version']}, not {SHIPPED_KERAS.relative_to(ROOT)}; "
            f"convert it: python -m training.export_tfjs {SHIPPED_KERAS.relative_to(ROOT)} extension/model "
            f"--quantize {shipped['quantization']} --overwrite"
        )
    size = bundle.metadata.image_size
    pngs = [encode(face_like(seed, size=size, fake=seed % 2 == 1)) for seed in (11, 12)]
    if SHARED_DATA.is_dir():
        # Real faces give probabilities across the range, not only near 0;
        # brought to the input size first, so that no decoder or resize differs.
        examples = list_split(SHARED_DATA, "test")
        for label in (0, 1):
            path = next(example.path for example in examples if example.label == label)
            pngs.append(encode(np.round(preprocess(path, size)).astype(np.uint8)))
    for index, png in enumerate(pngs):
        (tmp_path / f"face{index}.png").write_bytes(png)
    results = drive(browser, tmp_path, [{"src": f"face{index}.png"} for index in range(len(pngs))])["results"]
    expected = bundle.predict_fake(np.stack([preprocess(png, size) for png in pngs]))
    shown = [float(result["attribute"]) for result in results]
    np.testing.assert_allclose(shown, expected, atol=QUANTIZED_TOLERANCE)


def test_options_page_shows_threshold_and_saves_settings(tiny_run):
    page = tiny_run[3]
    assert "tiny-browser" in page["model"] and "calls a face AI-generated from a score of 40.0 %" in page["model"]
    refused, saved, plain_http, too_few_megapixels, loopback = page["saved"]
    assert refused["status"] == (
        "Not saved. The server URL must start with https:// (or http:// for a service on this machine)."
    )
    assert refused["stored"]["serverUrl"] != "ftp://example.test"  # left as the last check stored it
    assert saved["status"] == "Saved."
    assert saved["stored"] == {"localOnly": True, "serverUrl": "https://example.test:5000", "maxLocalMegapixels": 8,
                               "apiKey": "key-1", "apiKeyOrigin": "https://example.test:5000"}
    # A value refused is never stored: what was saved before stays.
    assert plain_http["status"].startswith(
        "Not saved. The server URL must use https:// unless the service runs on this"
    )
    assert too_few_megapixels["status"] == ('Not saved. The largest image checked in the browser must be a number of '
                                            'megapixels from 0.1 to 80; "0.05" was not saved.')
    assert plain_http["stored"] == too_few_megapixels["stored"] == saved["stored"]
    assert loopback["status"] == "Saved."
    # The key was saved for another server: saving this one without it drops it.
    assert loopback["stored"] == {"localOnly": True, "serverUrl": "http://localhost:5000", "maxLocalMegapixels": 0.5,
                                  "apiKey": "", "apiKeyOrigin": ""}
