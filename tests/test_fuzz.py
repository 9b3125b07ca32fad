"""Fuzzing the image decoder and the HTTP API: a score or a clean 4xx, never a 5xx or a crash.

Inputs are random bytes and real JPEG, PNG, WebP, GIF, BMP, TIFF and AVIF
files (made here, a few hundred bytes each; some with camera-like EXIF
blocks, some C2PA-signed or carrying XMP and PNG text chunks), and files of
formats the service refuses (DDS, ICO, TGA, PSD, EPS),
mutated by Hypothesis: bytes overwritten (often in the header or the EXIF
block), truncated, inserted, deleted and spliced. Schemathesis generates requests from ``/openapi.json`` and checks
every answer against the document.

The suite runs a few hundred inputs in total. The long run is the same file
with more examples per test and a random seed (docs/reliability.md):

    AIFACE_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/test_fuzz.py --hypothesis-show-statistics
"""

from __future__ import annotations

import collections
import io
import os
from datetime import timedelta

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis.specs.openapi.checks import positive_data_acceptance

from aiface.preprocess import FORMATS, MIN_SIDE, ImageError, load_image
from aiface.provenance import read_provenance
from aiface.provenance_rule import STATUSES, summarise
from helpers import face_like
from provenance_fixtures import fixtures
from server import create_app

EXAMPLES = int(os.environ.get("AIFACE_FUZZ_EXAMPLES", "0"))
LONG_RUN = EXAMPLES > 0
FUZZ = settings(
    max_examples=EXAMPLES or 60,
    # A generous bound per input: an input that takes longer is a hang.
    deadline=timedelta(seconds=10),
    # The suite must be repeatable in CI; the long run explores new inputs each time.
    derandomize=not LONG_RUN,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
IMAGE_CODES = {"not_image", "corrupt", "too_large", "too_small"}
# Inputs tried per test, printed at the end: the long run's count for docs/reliability.md.
INPUTS: collections.Counter = collections.Counter()
# Small enough that a mutated header claiming a huge image is refused before decoding.
MAX_PIXELS = 4_000_000


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def seed_files() -> dict[str, bytes]:
    """Valid files in every format and mode the decoder handles, 48 x 40 pixels."""
    rgb = Image.fromarray(face_like(1, size=48)[:40])
    rgba = rgb.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(rgb.size))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    sixteen = Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257).astype(np.uint16))
    # EXIF with more than an orientation, as cameras write it: tags of several types for mutations to break.
    camera = Image.Exif()
    camera[0x0112] = 8
    camera[0x010F] = "Camera maker"
    camera[0x0110] = "Model 1"
    camera[0x011A] = 72.0
    camera[0x0132] = "2024:01:02 03:04:05"
    extra = {
        "jpeg_camera_exif": _save(rgb, "JPEG", quality=70, exif=camera),
        "webp_camera_exif": _save(rgb, "WEBP", quality=60, exif=camera),
        "png_exif": _save(rgb, "PNG", exif=camera),
        "tiff_exif_deflate": _save(rgb, "TIFF", compression="tiff_adobe_deflate", exif=camera),
        "tiff_packbits_rgba": _save(rgba, "TIFF", compression="packbits"),
        "tiff_16bit_raw": _save(sixteen, "TIFF"),
    }
    if "AVIF" in FORMATS:
        extra["avif"] = _save(rgb, "AVIF", quality=50)
        extra["avif_alpha_exif"] = _save(rgba, "AVIF", quality=50, exif=camera)
    # Provenance to break: signed manifests (JUMBF), XMP packets, PNG text chunks.
    for name in ("c2pa_ai.jpg", "c2pa_ai.png", "c2pa_ai.webp", "xmp_ai.jpg", "a1111.png", "comfyui.png"):
        extra["provenance_" + name] = fixtures()[name][0]
    return {
        "jpeg": _save(rgb, "JPEG", quality=80),
        "jpeg_progressive_exif": _save(rgb, "JPEG", quality=60, progressive=True, exif=exif),
        "jpeg_cmyk": _save(rgb.convert("CMYK"), "JPEG"),
        "jpeg_gray": _save(rgb.convert("L"), "JPEG"),
        "png": _save(rgb, "PNG"),
        "png_rgba": _save(rgba, "PNG"),
        "png_palette_transparency": _save(rgb.convert("P"), "PNG", transparency=0),
        "png_16bit": _save(sixteen, "PNG"),
        "webp_lossy": _save(rgb, "WEBP", quality=50),
        "webp_lossless_alpha": _save(rgba, "WEBP", lossless=True),
        "gif": _save(rgb.convert("P"), "GIF"),
        "bmp": _save(rgb, "BMP"),
        "tiff": _save(rgb, "TIFF", compression="tiff_lzw"),
        **extra,
    }


def refused_seed_files() -> dict[str, bytes]:
    """Files in formats Pillow reads but the service refuses (aiface.preprocess.FORMATS): DDS and the like."""
    rgb = Image.fromarray(face_like(2, size=48)[:40])
    return {
        "dds": _save(rgb, "DDS"),
        "dds_dxt1": _save(rgb, "DDS", pixel_format="DXT1"),
        "ico": _save(rgb, "ICO"),
        "tga": _save(rgb, "TGA"),
        "psd_like": b"8BPS\x00\x01" + bytes(6) + b"\x00\x03\x00\x00\x00\x28\x00\x00\x00\x30\x00\x08\x00\x03",
        "eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 48 40\nshowpage\n",
    }


SEEDS = seed_files()
REFUSED = refused_seed_files()
# Where each seed keeps what decoders trust besides its first bytes: its EXIF
# block (the TIFF header inside it) and the AVIF boxes; mutations aim there too.
HOT = {
    name: data.find(marker)
    for name, data in {**SEEDS, **REFUSED}.items()
    for marker in (b"Exif\x00\x00", b"EXIF", b"eXIf", b"meta", b"DDS |", b"jumb", b"<x:xmpmeta", b"tEXt", b"zTXt")
    if marker in data
}


@st.composite
def mutated(draw) -> bytes:
    """A seed file (also one of a refused format) with up to four random edits."""
    name = draw(st.sampled_from(sorted(SEEDS) + sorted(REFUSED)))
    data = bytearray(SEEDS.get(name) or REFUSED[name])
    hot = HOT.get(name, 0)
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        # Headers hold the sizes, offsets and lengths that decoders trust: hit them often,
        # and the EXIF block or AVIF boxes where the seed has one.
        hot = min(hot, len(data) - 1)
        at = draw(st.one_of(st.integers(0, min(len(data), 64) - 1), st.integers(0, len(data) - 1),
                            st.integers(hot, min(len(data), hot + 128) - 1)))
        edit = draw(st.sampled_from(["overwrite", "truncate", "insert", "delete", "splice"]))
        if edit == "overwrite":
            special = st.sampled_from([b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff"])
            value = draw(st.binary(min_size=1, max_size=4) | special)
            data[at : at + len(value)] = value
        elif edit == "truncate":
            del data[at:]
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif edit == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            start = draw(st.integers(0, len(data) - 1))
            data[at:at] = data[start : start + draw(st.integers(1, 256))]
    return bytes(data)


uploads = st.one_of(mutated(), st.binary(max_size=512))


@pytest.fixture(scope="module", autouse=True)
def report_input_count(request):
    yield
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        parts = ", ".join(f"{name}: {count}" for name, count in sorted(INPUTS.items()))
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nfuzz inputs: {sum(INPUTS.values())} ({parts})")


@pytest.fixture(scope="module")
def app(tiny_model_path):
    return create_app({"MODEL_PATH": str(tiny_model_path), "MAX_IMAGE_PIXELS": MAX_PIXELS, "BATCH_WINDOW_MS": 0})


def test_every_seed_file_is_scored(app):
    client = app.test_client()
    for name, data in SEEDS.items():
        response = client.post("/v1/detect", data=data, content_type="image/octet-stream")
        assert response.status_code == 200, (name, response.json)


def test_every_file_of_a_refused_format_is_not_an_image(app):
    client = app.test_client()
    for name, data in REFUSED.items():
        response = client.post("/v1/detect", data=data, content_type="image/octet-stream")
        assert response.status_code == 400 and response.json["error"]["code"] == "not_image", (name, response.json)


@FUZZ
@given(data=uploads)
def test_decoder_gives_pixels_or_an_image_error(data):
    INPUTS["decoder"] += 1
    try:
        image = load_image(data, max_pixels=MAX_PIXELS)
    except ImageError as error:
        assert error.code in IMAGE_CODES
        assert str(error)
        return
    assert image.pixels.dtype == np.uint8
    assert image.pixels.ndim == 3 and image.pixels.shape[2] == 3
    assert min(image.pixels.shape[:2]) >= MIN_SIDE


VALIDATIONS = ("trusted", "valid", "invalid", "unreadable", "remote", "unavailable")


def _assert_finding(summary: dict) -> None:
    assert summary["status"] in STATUSES
    if summary["c2pa"] is not None:
        assert summary["c2pa"]["validation"] in VALIDATIONS
        assert summary["c2pa"]["validation"] in ("trusted", "valid") or summary["c2pa"]["problems"]


@FUZZ
@given(data=uploads)
def test_provenance_readers_give_a_finding_never_an_exception(data):
    INPUTS["provenance"] += 1
    _assert_finding(summarise(read_provenance(data)))


# The crafted files of issue 36 (a manifest at an address, ten thousand text
# chunks, too many JUMBF boxes, XMP written every way) and the signed ones.
CRAFTED = {name: data for name, (data, _) in fixtures().items()}


@st.composite
def crafted(draw) -> bytes:
    """A crafted provenance file with up to four bytes overwritten, a cut or a repeated stretch."""
    data = bytearray(CRAFTED[draw(st.sampled_from(sorted(CRAFTED)))])
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data) - 1))
        edit = draw(st.sampled_from(["overwrite", "truncate", "repeat"]))
        if edit == "overwrite":
            data[at : at + 4] = draw(st.binary(min_size=1, max_size=4))
        elif edit == "truncate":
            del data[max(at, 1):]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 256))] * draw(st.integers(1, 64))
    return bytes(data)


@FUZZ
@given(data=crafted())
def test_provenance_readers_stay_within_their_time_and_memory_on_crafted_files(data):
    import time
    import tracemalloc

    INPUTS["provenance_crafted"] += 1
    tracemalloc.start()
    started = time.perf_counter()
    try:
        summary = summarise(read_provenance(data))
        elapsed, peak = time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    _assert_finding(summary)
    # The C2PA reader's own limit is 2 s; the metadata readers keep at most a few MiB whatever the file.
    assert elapsed < 3.0, elapsed
    assert peak < 16 * 2**20 + 4 * len(data), peak


def _assert_clean(response) -> None:
    assert response.status_code in (200, 400, 413, 415), response.get_data()[:300]
    body = response.json
    if response.status_code == 200:
        assert 0.0 <= body["probability_fake"] <= 1.0
        assert body["label"] in ("fake", "real")
        assert body["provenance"]["status"] in STATUSES
    else:
        assert set(body["error"]) == {"code", "message"}


@pytest.mark.slow  # over 5 s on 2 shared cores
@FUZZ
@given(
    data=uploads,
    content_type=st.sampled_from(["image/jpeg", "image/png", "image/webp", "image/x-anything", "text/plain"])
    | st.text(max_size=40),
)
def test_raw_upload_gets_a_score_or_a_clean_4xx(app, data, content_type):
    INPUTS["raw upload"] += 1
    try:
        response = app.test_client().post("/v1/detect", data=data, headers={"Content-Type": content_type})
    except ValueError:
        # Werkzeug's test client refuses to build a request with some header
        # values (newlines); no such request reaches the service.
        return
    _assert_clean(response)


@FUZZ
@given(files=st.lists(uploads, min_size=0, max_size=5), field=st.sampled_from(["image", "image", "picture"]))
def test_multipart_batch_gets_scores_or_clean_errors(app, files, field):
    INPUTS["multipart batch"] += 1
    client = app.test_client()
    form = {field: [(io.BytesIO(data), f"{index}.bin") for index, data in enumerate(files)]}
    response = client.post("/v1/detect/batch", data=form, content_type="multipart/form-data")
    assert response.status_code in (200, 400, 413), response.get_data()[:300]
    if response.status_code != 200:
        return
    results = response.json["results"]
    assert len(results) == len(files)
    for result in results:
        if "error" in result:
            assert result["status"] in (400, 413) and result["error"]["code"] in IMAGE_CODES
        else:
            assert 0.0 <= result["probability_fake"] <= 1.0


schemathesis.openapi.media_type("image/*", uploads)


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@FUZZ
@pytest.mark.slow  # a few hundred generated requests through the whole service
def test_api_conforms_to_its_openapi_document(case):
    # No 5xx, and status codes, headers, content types and bodies as documented.
    # Schema-valid bodies may still be refused: "format: binary" says nothing
    # of whether the bytes are an image of at least 32 px.
    INPUTS["openapi"] += 1
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
