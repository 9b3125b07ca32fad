"""Issue 13, "Hardening, round two", in process: bounded memory, bad images as 4xx, settings, headers.

The same under real gunicorn (slow clients, chunked bodies, start-up) is in
test_server_slow_clients.py; behind nginx in test_reverse_proxy.py.
"""

from __future__ import annotations

import io
import math
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aiface import preprocess
from aiface.preprocess import ImageError, OpenedImage, load_image, to_model_input
from helpers import encode, face_like
from server import StartupError, check_settings, create_app
from server.admission import PixelBudget
from server.exceptions import Busy

DATA = Path(__file__).resolve().parent / "data"


def jpeg(side: int, quality: int = 90, **options) -> bytes:
    small = face_like(5, size=64)
    return encode(np.asarray(Image.fromarray(small).resize((side, side), Image.BILINEAR)), "JPEG", quality=quality,
                  **options)


def with_declared_size(data: bytes, width: int, height: int) -> bytes:
    """A JPEG whose frame header (SOF0) claims another size than its data holds."""
    at = data.index(b"\xff\xc0")
    return data[: at + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[at + 9 :]


@pytest.fixture(scope="module")
def app(tiny_model_path):
    return create_app({"MODEL_PATH": str(tiny_model_path), "BATCH_WINDOW_MS": 0})


# --- 1. memory and time ---------------------------------------------------------------------------------------


def test_model_input_makes_no_full_size_float64_copy():
    pixels = np.random.default_rng(0).integers(0, 256, (2000, 2000, 3), dtype=np.uint8)
    tracemalloc.start()
    try:
        to_model_input(pixels, 256)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A float64 copy alone would be 96 MB; the horizontal pass's (2000, 256, 3) float64 result is 12 MB.
    assert peak < 20 * 2**20, peak


@pytest.mark.slow  # encodes and decodes a large JPEG
def test_a_large_jpeg_is_decoded_at_reduced_scale_and_reports_its_full_size():
    data = jpeg(6000, quality=50)
    with OpenedImage(data) as opened:
        assert opened.decoded_pixels == 3000 * 3000  # draft mode: 1/2 scale, still over WORK_SIDE
        image = opened.load()
    assert image.pixels.shape == (3000, 3000, 3)
    assert (image.width, image.height) == (6000, 6000) and image.scale == (2.0, 2.0)


def test_a_large_png_is_reduced_right_after_decoding():
    pixels = np.full((1500, 5000, 3), 90, np.uint8)
    image = load_image(encode(pixels))
    assert image.pixels.shape == (750, 2500, 3)  # reduced by 2: the longer side stays at least WORK_SIDE
    assert (image.width, image.height) == (5000, 1500)
    assert np.all(image.pixels == 90)


def test_below_the_threshold_nothing_is_reduced_so_the_browser_sees_the_same_input():
    side = 2 * preprocess.WORK_SIDE
    pixels = np.random.default_rng(1).integers(0, 256, (64, side, 3), dtype=np.uint8)
    image = load_image(encode(pixels))
    assert image.full_size is None and np.array_equal(image.pixels, pixels)


@pytest.mark.slow  # finds faces in a large scene
def test_large_image_boxes_are_in_the_full_images_pixels(app):
    response = app.test_client().post("/v1/detect", data=jpeg(6000, quality=40), content_type="image/jpeg")
    assert response.status_code == 200, response.json
    body = response.json
    assert body["image"] == {"width": 6000, "height": 6000}
    if body["scored"] == "whole_image":
        return
    for face in body["faces"]:
        box = face["box"]
        assert 0 <= box["x"] < 6000 and box["x"] + box["width"] <= 6000


@pytest.mark.slow  # encodes a large JPEG and explains its verdict
def test_a_large_images_explanation_covers_a_region_of_the_full_image(app):
    response = app.test_client().post("/v1/detect?explain=1", data=jpeg(6000, quality=40), content_type="image/jpeg")
    assert response.status_code == 200, response.json
    box = response.json["explanation"]["box"]
    assert box["x"] + box["width"] <= 6000 and box["y"] + box["height"] <= 6000
    if response.json["scored"] == "whole_image":
        assert box == {"x": 0, "y": 0, "width": 6000, "height": 6000}


def test_pixel_budget_lets_one_image_through_and_makes_the_next_wait_then_refuses():
    budget = PixelBudget(100)
    inside, release = threading.Event(), threading.Event()

    def hold_big():
        with budget.hold(150, timeout_s=5):  # larger than the budget, alone: admitted
            inside.set()
            assert release.wait(10)

    holder = threading.Thread(target=hold_big)
    holder.start()
    try:
        assert inside.wait(10)
        with pytest.raises(Busy, match="at most 100"):
            with budget.hold(10, timeout_s=0.05):
                pass
        admitted = threading.Event()

        def wait_for_room():
            with budget.hold(60, timeout_s=10):
                admitted.set()

        waiter = threading.Thread(target=wait_for_room)
        waiter.start()
        assert not admitted.wait(0.05)  # bounded: no room while the large one is decoded
        release.set()
        waiter.join(10)
        assert admitted.is_set()
    finally:
        release.set()
        holder.join(10)
    assert budget.used == 0


def test_batch_images_are_decoded_one_at_a_time(app, monkeypatch):
    detector = app.extensions["aiface_detector"]
    budget = detector._pixel_budget
    seen = []
    original = OpenedImage.load

    def watching(self):
        seen.append(budget.used)
        return original(self)

    monkeypatch.setattr(OpenedImage, "load", watching)
    # Large enough for the watermark reader to decode them too.
    files = [(io.BytesIO(encode(face_like(seed, size=256))), f"{seed}.png") for seed in range(3)]
    response = app.test_client().post("/v1/detect/batch", data={"image": files})
    assert response.status_code == 200
    # Each decode, the detection's and the watermark reader's, held only its own pixels.
    assert seen == [256 * 256] * 6


# --- 3. every bad image a 4xx ---------------------------------------------------------------------------------


def test_decoder_exceptions_become_corrupt(monkeypatch):
    data = encode(face_like(1))
    for exception in (RuntimeError("avif"), NotImplementedError("dds"), __import__("struct").error("exif"),
                      TypeError("tag"), KeyError("mode"), IndexError("palette")):
        def failing(self, *args, exception=exception):
            raise exception

        monkeypatch.setattr(Image.Image, "getexif", failing)
        with pytest.raises(ImageError) as caught:
            load_image(data)
        assert caught.value.code == "corrupt"


@pytest.mark.parametrize("fmt", ["DDS", "ICO", "TGA", "PCX", "PPM", "SGI", "QOI"])
def test_formats_outside_the_allowlist_are_not_images(fmt):
    rgb = Image.fromarray(face_like(2, size=64))
    buffer = io.BytesIO()
    rgb.save(buffer, fmt)
    with pytest.raises(ImageError) as caught:
        load_image(buffer.getvalue())
    assert caught.value.code == "not_image"


def test_eps_never_reaches_ghostscript():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n0 0 moveto 64 64 lineto stroke\nshowpage\n"
    with pytest.raises(ImageError) as caught:
        load_image(eps)
    assert caught.value.code == "not_image"


@pytest.mark.skipif("AVIF" not in preprocess.FORMATS, reason="this Pillow was built without AVIF")
def test_avif_is_accepted_and_a_broken_one_is_corrupt():
    buffer = io.BytesIO()
    Image.fromarray(face_like(3, size=64)).save(buffer, "AVIF", quality=60)
    data = buffer.getvalue()
    assert load_image(data).pixels.shape == (64, 64, 3)
    # Found by mutating this file: libavif's failure is a RuntimeError in Pillow.
    broken = data[:30] + bytes([data[30] ^ 0xFF]) + data[31:200]
    with pytest.raises(ImageError) as caught:
        load_image(broken)
    assert caught.value.code in ("corrupt", "not_image")


@pytest.mark.parametrize("name", ["exif_struct_error.jpg", "exif_struct_error.webp"])
def test_broken_exif_blocks_do_not_fail_the_request(app, name):
    # Pillow's exif_transpose raised struct.error writing these EXIF blocks back (a 500 before).
    response = app.test_client().post("/v1/detect", data=(DATA / name).read_bytes(), content_type="image/jpeg")
    assert response.status_code == 200, response.json
    assert response.json["image"] == {"width": 40, "height": 48}  # orientation 6 applied


def test_a_jpeg_whose_declared_size_its_data_cannot_fill_is_refused(app):
    small = jpeg(256, quality=95)
    data = with_declared_size(small, 7000, 7000)
    with pytest.raises(ImageError) as caught:
        load_image(data)
    assert caught.value.code == "corrupt" and "7000x7000" in str(caught.value)
    response = app.test_client().post("/v1/detect", data=data, content_type="image/jpeg")
    assert response.status_code == 400 and response.json["error"]["code"] == "corrupt"
    assert load_image(small).pixels.shape == (256, 256, 3)  # the honest one is fine


def test_a_flat_progressive_jpeg_is_not_mistaken_for_an_empty_one():
    pixels = np.full((3000, 3000, 3), 120, np.uint8)
    data = encode(pixels, "JPEG", quality=50, progressive=True, optimize=True)
    assert load_image(data).width == 3000


def test_in_a_batch_a_bad_image_is_an_error_entry(app):
    files = [(io.BytesIO(encode(face_like(1))), "a.png"), (io.BytesIO(b"\x00\x00\x01\x00garbage"), "b.ico"),
             (io.BytesIO(with_declared_size(jpeg(128), 7000, 7000)), "c.jpg"),
             (io.BytesIO(encode(face_like(2))), "d.png")]
    response = app.test_client().post("/v1/detect/batch", data={"image": files})
    assert response.status_code == 200
    results = response.json["results"]
    assert "probability_fake" in results[0] and "probability_fake" in results[3]
    assert results[1]["status"] == 400 and results[2]["error"]["code"] == "corrupt"


# --- 2. bodies are read before admission ----------------------------------------------------------------------


class WatchedStream(io.BytesIO):
    """A request body that records how many admission places were taken while it was read."""

    def __init__(self, data: bytes, admission):
        super().__init__(data)
        self.admission = admission
        self.in_flight_while_read: list[int] = []

    def read(self, size=-1):
        self.in_flight_while_read.append(self.admission.in_flight)
        return super().read(size)


def test_a_request_takes_its_admission_place_only_once_its_body_is_read(app):
    admission = app.extensions["aiface_admission"]
    stream = WatchedStream(encode(face_like(4)), admission)
    response = app.test_client().post("/v1/detect", input_stream=stream, content_type="image/png",
                                      headers={"Content-Length": str(len(stream.getvalue()))})
    assert response.status_code == 200
    assert stream.in_flight_while_read and set(stream.in_flight_while_read) == {0}


def test_a_body_over_the_limit_is_a_413_that_names_it(tiny_model_path):
    client = create_app({"MODEL_PATH": str(tiny_model_path), "MAX_CONTENT_LENGTH": 5000}).test_client()
    response = client.post("/v1/detect", data=b"\x00" * 6000, content_type="image/png")
    assert response.status_code == 413
    assert "5,000 bytes" in response.json["error"]["message"]


# --- 4. settings ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "setting, value, words",
    [
        ("INFERENCE_TIMEOUT_S", math.nan, "INFERENCE_TIMEOUT_S is nan"),
        ("INFERENCE_TIMEOUT_S", -1.0, "between"),
        ("MAX_BATCH_SIZE", 0, "MAX_BATCH_SIZE is 0"),
        ("MAX_BATCH_IMAGES", 2.5, "whole number"),
        ("BATCH_WINDOW_MS", math.inf, "BATCH_WINDOW_MS is inf"),
        ("MAX_PIXELS_IN_FLIGHT", 0, "MAX_PIXELS_IN_FLIGHT"),
        ("REQUEST_DEADLINE_S", 0, "REQUEST_DEADLINE_S"),
        ("FACE_DETECTION", "yes", "true or false"),
        ("ALLOWED_ORIGINS", "*", "no '*'"),
        ("ALLOWED_ORIGINS", "https://*.example.com", "no '*'"),
        ("ALLOWED_ORIGINS", "https://example.com/path", "no '*', paths"),
    ],
)
def test_unusable_settings_stop_start_up_with_one_line(tiny_model_path, setting, value, words):
    with pytest.raises(StartupError) as caught:
        create_app({"MODEL_PATH": str(tiny_model_path), setting: value})
    message = caught.value.message
    assert "\n" not in message and message.startswith("cannot start the detection service: ")
    assert words in message


def test_exact_origins_are_accepted(tiny_model_path):
    origins = "chrome-extension://abcdefghijklmnopabcdefghijklmnop, https://app.example.com:8443"
    app = create_app({"MODEL_PATH": str(tiny_model_path), "ALLOWED_ORIGINS": origins})
    assert app.config["ALLOWED_ORIGINS"] == ["chrome-extension://abcdefghijklmnopabcdefghijklmnop",
                                            "https://app.example.com:8443"]


def test_settings_are_checked_from_the_environment_without_loading_a_model(monkeypatch):
    monkeypatch.setenv("AIFACE_INFERENCE_TIMEOUT_S", "nan")
    assert "INFERENCE_TIMEOUT_S is nan" in check_settings()
    monkeypatch.setenv("AIFACE_INFERENCE_TIMEOUT_S", "5")
    monkeypatch.setenv("MODEL_PATH", "/nonexistent/model.keras")  # the model is the worker's business
    assert check_settings() is None


# --- 5. headers and leaks -------------------------------------------------------------------------------------


def test_answers_carry_nosniff_and_no_store(app):
    client = app.test_client()
    for response in (
        client.post("/v1/detect", data=encode(face_like(5)), content_type="image/png"),
        client.post("/v1/detect", data=b"not an image", content_type="image/png"),
        client.get("/healthz"),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"


def test_models_are_loaded_with_safe_mode_on(tiny_model_path, monkeypatch):
    import keras

    from aiface.bundle import load_bundle

    calls = []
    original = keras.models.load_model

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(keras.models, "load_model", recording)
    load_bundle(tiny_model_path)
    assert calls and calls[0].get("safe_mode") is True
