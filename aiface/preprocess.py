"""The one definition of how an image becomes model input.

Training, evaluation and the server all call this module; the browser
extension mirrors it in ``extension/src/preprocess.js`` and a test compares
the two on the same pixels. The steps, in order:

1. decode (Pillow), refusing non-images, truncated files and images over
   ``MAX_PIXELS`` (decompression bombs);
2. apply the EXIF orientation;
3. convert to 8-bit RGB: palette and grayscale are expanded, 16-bit samples
   keep their high byte, CMYK goes through Pillow's conversion, and alpha is
   composited onto white with integer arithmetic,
   ``(c * a + 255 * (255 - a) + 127) // 255``;
4. crop the centred square (offset ``(w - s) // 2``, ``(h - s) // 2``), as
   the training data were cropped;
5. resize to ``size`` x ``size`` with the triangle (bilinear) filter,
   antialiased when shrinking. Exact convention, so that the JavaScript mirror
   matches bit for bit:
   - separable: horizontal pass first, then vertical, both in float64;
   - ``scale = in / out``; ``support = max(scale, 1)``;
   - output pixel ``i`` is centred at ``c = (i + 0.5) * scale`` in input
     coordinates; its taps are ``j = floor(c - support) + k`` for
     ``k = 0 .. 2 * ceil(support)``, weighted
     ``max(0, 1 - |j + 0.5 - c| / support)``, and taps outside the image are
     clamped to the nearest edge pixel;
   - weights are summed tap by tap in order ``k = 0, 1, ...`` and each is
     divided by that sum; the output is accumulated tap by tap in the same
     order, ``acc = acc + w[k] * x[j_k]`` starting from 0;
6. scale: the result is cast to float32, values in [0, 255]. The network
   normalises its own input, so every runtime passes these values as they are.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Larger than photos from almost any camera, small enough that decoding
# cannot exhaust memory (RGBA at this size is 320 MB) and below Pillow's own
# decompression-bomb warning, so callers see our error rather than its warning.
MAX_PIXELS = 80_000_000
# Below this there is too little face left to judge.
MIN_SIDE = 32


class ImageError(ValueError):
    """An input that cannot be turned into model input.

    ``code`` is one of ``not_image``, ``corrupt``, ``too_large``,
    ``too_small``; the message says what is wrong in words.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class LoadedImage:
    """An upright 8-bit RGB image and the size it was decoded at."""

    pixels: np.ndarray  # (height, width, 3) uint8

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def load_image(source: str | os.PathLike | bytes, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Decode a file path or encoded bytes into upright 8-bit RGB."""
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        with Image.open(stream) as image:
            if image.width * image.height > max_pixels:
                raise ImageError(
                    "too_large",
                    f"image is {image.width}x{image.height} pixels, more than the "
                    f"{max_pixels:,} allowed",
                )
            image.load()
            upright = ImageOps.exif_transpose(image)
            pixels = _to_rgb(upright)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not_image", "not an image in a format we can read") from None
    except Image.DecompressionBombError as error:
        raise ImageError("too_large", f"image too large: {error}") from None
    except FileNotFoundError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageError("corrupt", f"corrupt or truncated image: {error}") from None
    if min(pixels.shape[:2]) < MIN_SIDE:
        raise ImageError(
            "too_small",
            f"image is {pixels.shape[1]}x{pixels.shape[0]} pixels; at least "
            f"{MIN_SIDE} px on each side is needed to judge a face",
        )
    return LoadedImage(pixels)


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # Pillow's own convert("L") clips 16-bit values instead of scaling them.
        gray = (np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "F":
        gray = np.asarray(image, dtype=np.float32).clip(0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint32)
        return composite_on_white(rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Flatten straight (non-premultiplied) RGBA onto white, exactly in integers."""
    rgba = rgba.astype(np.uint32)
    alpha = rgba[:, :, 3:4]
    rgb = (rgba[:, :, :3] * alpha + 255 * (255 - alpha) + 127) // 255
    return rgb.astype(np.uint8)


def center_square(pixels: np.ndarray) -> np.ndarray:
    height, width = pixels.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return pixels[top : top + side, left : left + side]


def _resize_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Tap indices and normalised weights of the triangle filter, (out, taps)."""
    scale = in_size / out_size
    support = max(scale, 1.0)
    taps = 2 * math.ceil(support) + 1
    centers = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    first = np.floor(centers - support)
    positions = first[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    weights = np.maximum(0.0, 1.0 - np.abs(positions + 0.5 - centers[:, None]) / support)
    total = np.zeros(out_size, dtype=np.float64)
    for k in range(taps):
        total = total + weights[:, k]
    weights = weights / total[:, None]
    indices = np.clip(positions, 0, in_size - 1).astype(np.int64)
    return indices, weights


def _resize_axis(pixels: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    indices, weights = _resize_taps(pixels.shape[axis], out_size)
    shape = [1, 1, 1]
    shape[axis] = out_size
    acc = np.zeros(
        pixels.shape[:axis] + (out_size,) + pixels.shape[axis + 1 :], dtype=np.float64
    )
    for k in range(indices.shape[1]):
        acc = acc + weights[:, k].reshape(shape) * np.take(pixels, indices[:, k], axis=axis)
    return acc


def resize(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize (H, W, 3) pixels to (size, size, 3) float64, as documented above."""
    horizontal = _resize_axis(pixels.astype(np.float64), size, axis=1)
    return _resize_axis(horizontal, size, axis=0)


def to_model_input(pixels: np.ndarray, size: int) -> np.ndarray:
    """Centre square, resize and scale: (size, size, 3) float32 in [0, 255]."""
    return resize(center_square(pixels), size).astype(np.float32)


def preprocess(source: str | os.PathLike | bytes, size: int) -> np.ndarray:
    """Everything from a file or bytes to one model input."""
    return to_model_input(load_image(source).pixels, size)
