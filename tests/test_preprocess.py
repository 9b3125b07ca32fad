import io
import math

import numpy as np
import pytest
from PIL import Image

from aiface.preprocess import (
    ImageError,
    center_square,
    composite_on_white,
    load_image,
    preprocess,
    resize,
    resize_axis,
    to_model_input,
)
from helpers import encode, face_like


@pytest.fixture
def photo():
    return face_like(7, size=64)


def test_png_round_trip_keeps_pixels(photo):
    assert np.array_equal(load_image(encode(photo)).pixels, photo)


def test_loads_from_a_path(tmp_path, photo):
    path = tmp_path / "face.png"
    path.write_bytes(encode(photo))
    assert np.array_equal(load_image(path).pixels, photo)


def test_exif_orientation_is_applied(photo):
    # Stored rotated, with EXIF orientation 6 ("rotate 90 CW to view").
    stored = np.rot90(photo, k=1)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(stored, "JPEG", quality=100, exif=exif.tobytes())
    upright = load_image(data).pixels
    assert upright.shape == photo.shape
    assert np.abs(upright.astype(int) - photo.astype(int)).mean() < 3


def test_grayscale_becomes_three_equal_channels(photo):
    gray = photo[:, :, 0]
    pixels = load_image(encode(gray)).pixels
    assert pixels.shape == (64, 64, 3)
    assert np.array_equal(pixels[:, :, 1], gray) and np.array_equal(pixels[:, :, 2], gray)


def test_sixteen_bit_keeps_the_high_byte(photo):
    gray16 = photo[:, :, 0].astype(np.uint16) * 257
    buffer = io.BytesIO()
    Image.fromarray(gray16).save(buffer, format="PNG")
    pixels = load_image(buffer.getvalue()).pixels
    assert np.array_equal(pixels[:, :, 0], photo[:, :, 0])


def test_alpha_is_composited_on_white(photo):
    alpha = np.full(photo.shape[:2] + (1,), 128, np.uint8)
    alpha[:8] = 0
    rgba = np.concatenate([photo, alpha], axis=2)
    pixels = load_image(encode(rgba)).pixels
    assert np.all(pixels[:8] == 255)
    expected = (photo[8:].astype(int) * 128 + 255 * 127 + 127) // 255
    assert np.array_equal(pixels[8:], expected)


def test_composite_is_exact_at_the_extremes():
    rgba = np.array([[[10, 20, 30, 255], [10, 20, 30, 0]]], np.uint8)
    assert composite_on_white(rgba).tolist() == [[[10, 20, 30], [255, 255, 255]]]


def test_palette_and_cmyk_are_converted(photo):
    palette = Image.fromarray(photo).convert("P")
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    assert np.array_equal(load_image(buffer.getvalue()).pixels, np.asarray(palette.convert("RGB")))
    cmyk = Image.fromarray(photo).convert("CMYK")
    buffer = io.BytesIO()
    cmyk.save(buffer, format="JPEG", quality=100)
    pixels = load_image(buffer.getvalue()).pixels
    assert pixels.shape == photo.shape
    assert np.abs(pixels.astype(int) - photo.astype(int)).mean() < 8


def test_truncated_file_is_corrupt(photo):
    data = encode(photo, "JPEG", quality=90)
    with pytest.raises(ImageError) as error:
        load_image(data[: len(data) // 2])
    assert error.value.code == "corrupt"


def test_text_is_not_an_image():
    with pytest.raises(ImageError) as error:
        load_image(b"hello, this is not a picture")
    assert error.value.code == "not_image"
    assert "not an image" in str(error.value)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_is_refused_before_decoding():
    # A 10000x10000 PNG of zeros compresses to a few hundred kilobytes.
    bomb = encode(np.zeros((10_000, 10_000), np.uint8))
    with pytest.raises(ImageError) as error:
        load_image(bomb, max_pixels=50_000_000)
    assert error.value.code == "too_large"
    assert "10000x10000" in str(error.value)


def test_tiny_images_are_refused():
    with pytest.raises(ImageError) as error:
        load_image(encode(np.zeros((20, 40, 3), np.uint8)))
    assert error.value.code == "too_small"


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "nope.jpg")


def test_center_square_takes_the_middle():
    pixels = np.arange(5 * 8).reshape(5, 8, 1)
    square = center_square(pixels)
    assert square.shape == (5, 5, 1)
    assert square[0, 0, 0] == pixels[0, 1, 0]


def test_resize_to_the_same_size_is_the_identity(photo):
    # resize skips the filter at scale 1 because the filter itself is the identity there.
    assert np.array_equal(resize_axis(resize_axis(photo, 64, axis=1), 64, axis=0), photo.astype(np.float64))
    assert np.array_equal(resize(photo, 64), photo.astype(np.float64))


def test_resize_keeps_a_constant_image_constant():
    flat = np.full((97, 97, 3), 200, np.uint8)
    assert np.allclose(resize(flat, 31), 200.0, atol=1e-9)


def _documented_resize_axis(pixels: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """Step 5 as the module's docstring writes it, one output value at a time, every tap included."""
    moved = np.moveaxis(pixels.astype(np.float64), axis, 0)
    in_size = moved.shape[0]
    scale = in_size / out_size
    support = max(scale, 1.0)
    out = np.zeros((out_size,) + moved.shape[1:])
    for i in range(out_size):
        centre = (i + 0.5) * scale
        first = math.floor(centre - support)
        taps = [first + k for k in range(2 * math.ceil(support) + 1)]
        weights = [max(0.0, 1.0 - abs(j + 0.5 - centre) / support) for j in taps]
        total = 0.0
        for weight in weights:
            total = total + weight
        for index in np.ndindex(moved.shape[1:]):
            acc = 0.0
            for j, weight in zip(taps, weights, strict=True):
                acc = acc + (weight / total) * moved[(min(max(j, 0), in_size - 1),) + index]
            out[(i,) + index] = acc
    return np.moveaxis(out, 0, axis)


@pytest.mark.parametrize("shape, size", [((9, 23, 3), (5, 7)), ((6, 5, 3), (13, 11)), ((31, 8, 3), (4, 17))])
def test_resize_is_the_documented_arithmetic_bit_for_bit(shape, size):
    """Shrinking, enlarging and both: the vectorised passes (zero-weight taps left out) give every bit of it."""
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    ours = resize_axis(resize_axis(pixels, size[1], axis=1), size[0], axis=0)
    written_out = _documented_resize_axis(_documented_resize_axis(pixels, size[1], 1), size[0], 0)
    assert ours.tobytes() == written_out.tobytes()


def test_resize_matches_pillows_antialiased_bilinear_inside_the_frame():
    pixels = face_like(3, size=240)
    ours = resize(pixels, 60)
    pillow = np.asarray(Image.fromarray(pixels).resize((60, 60), Image.Resampling.BILINEAR), np.float64)
    # Pillow rounds to 8 bits and trims the filter at the border; we clamp.
    assert np.abs(ours - pillow)[2:-2, 2:-2].max() <= 1.0


def test_model_input_shape_range_and_type(photo):
    out = preprocess(encode(photo), 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 255.0
    assert np.array_equal(out, to_model_input(photo, 32))
