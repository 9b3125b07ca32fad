"""The one definition of how an image becomes model input.

Training, evaluation and the server all call this module; the browser
extension mirrors it in ``extension/src/preprocess.js`` and a test compares
the two on the same pixels. The steps, in order:

1. decode (Pillow), refusing non-images, formats outside ``FORMATS``,
   truncated files, images over ``MAX_PIXELS`` (decompression bombs) and
   JPEGs whose declared size their data cannot fill; any exception a decoder
   raises becomes ``ImageError("corrupt")``;
   1a. only for images whose longer side is over ``2 * work_side`` (more than
   4x the working size's pixels; ``WORK_SIDE`` = 2048 by default): a JPEG is
   decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, Pillow's draft
   mode) and any other format is box-reduced by an integer factor, in both
   cases to no less than ``work_side`` on the longer side. Below that size
   nothing is reduced and the model input is bit for bit the browser's; above
   it, the browser decodes at full size and the two differ slightly;
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
   (this implementation converts the image to float64 a block of rows at a
   time, which is the same arithmetic without a full-size float64 copy, and
   leaves out each output's taps of weight 0: with samples >= 0, adding
   ``0 * x`` changes no bit of ``acc``, so only the cost goes);
6. scale: the result is cast to float32, values in [0, 255]. The network
   normalises its own input, so every runtime passes these values as they are.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError, features

# Larger than photos from almost any camera, small enough that decoding
# cannot exhaust memory (RGBA at this size is 320 MB) and below Pillow's own
# decompression-bomb warning, so callers see our error rather than its warning.
MAX_PIXELS = 80_000_000
# The limits the service (server/config.py) and ``aiface scan`` apply by default: the largest file read
# (the service's request body) and the largest image decoded, width x height.
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
# Below this there is too little face left to judge.
MIN_SIDE = 32
# The formats we decode (Pillow's format names; a JPEG with a second picture
# opens as MPO). Pillow reads some 40 others (EPS through Ghostscript, DDS,
# PSD, ...); they are never tried. AVIF only where Pillow was built with it.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF") + (("AVIF",) if features.check("avif") else ())
OPENED_FORMATS = frozenset(FORMATS) | {"MPO"}
# The longer side that face finding (at most 1024 px) and face crops (a face
# of 9 % of the longer side still gives a 256 px crop) need. Images more than
# twice as long are decoded or reduced to no less than this (step 1a above).
WORK_SIDE = 2048
# A Huffman-coded JPEG spends at least one bit per 8 x 8 block of its
# full-resolution component (the DC code, in baseline and progressive alike).
JPEG_MIN_BITS_PER_BLOCK = 1
JPEG_HUFFMAN_FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7})
JPEG_FRAMES = JPEG_HUFFMAN_FRAMES | {0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
ORIENTATION_TAG = 0x0112
TRANSPOSITIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Those that swap width and height.
SWAPS = frozenset(
    {Image.Transpose.TRANSPOSE, Image.Transpose.ROTATE_270, Image.Transpose.TRANSVERSE, Image.Transpose.ROTATE_90}
)
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
# Rows per block in the alpha composite, and rows (or columns) per block in
# the resize: temporaries stay small and in cache.
BLOCK_ROWS = 64
RESIZE_BLOCK = 16
MAX_MESSAGE = 200


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
    """An upright 8-bit RGB image and the size it has.

    ``pixels`` is smaller than ``width`` x ``height`` only for images
    reduced while decoding (step 1a); ``scale`` maps their coordinates back.
    """

    pixels: np.ndarray  # (height, width, 3) uint8
    full_size: tuple[int, int] | None = None  # (width, height) upright, before any reduction

    @property
    def width(self) -> int:
        return self.full_size[0] if self.full_size else int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return self.full_size[1] if self.full_size else int(self.pixels.shape[0])

    @property
    def scale(self) -> tuple[float, float]:
        """(x, y) factors from ``pixels`` coordinates to the full image's."""
        return self.width / self.pixels.shape[1], self.height / self.pixels.shape[0]


@contextlib.contextmanager
def _image_errors():
    """Every decoder failure as an ImageError: Pillow's plugins raise far more than OSError."""
    try:
        yield
    except (ImageError, FileNotFoundError):
        raise
    except UnidentifiedImageError:
        raise ImageError("not_image", "not an image in a format we can read") from None
    except Image.DecompressionBombError as error:
        raise ImageError("too_large", f"image too large: {error}") from None
    except MemoryError:
        raise ImageError("too_large", "image too large to decode") from None
    except Exception as error:  # struct.error, RuntimeError, NotImplementedError, ... from crafted files
        detail = str(error) or type(error).__name__
        raise ImageError("corrupt", f"corrupt or truncated image: {detail[:MAX_MESSAGE]}") from None


def _jpeg_frame(data: bytes) -> int | None:
    """The SOF marker of a JPEG (0xC0 baseline, 0xC2 progressive, ...), walking the header's segments."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in JPEG_FRAMES:
            return marker
        if marker == 0xDA:  # start of scan before any frame
            return None
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return None


def _check_fillable(image: Image.Image, data: bytes | None) -> None:
    """Refuse a JPEG whose data is too short to hold the picture its header declares.

    libjpeg fills what is missing with grey and calls it a picture: a 59 KB
    file declaring 7000 x 7000 would be scored as a photo.
    """
    if data is None or image.format not in ("JPEG", "MPO"):
        return
    if _jpeg_frame(data) not in JPEG_HUFFMAN_FRAMES:
        return  # arithmetic coding can spend less than a bit per block
    blocks = math.ceil(image.width / 8) * math.ceil(image.height / 8)
    needed = blocks * JPEG_MIN_BITS_PER_BLOCK // 8
    if len(data) < needed:
        raise ImageError(
            "corrupt",
            f"image declares {image.width}x{image.height} pixels, which needs at least {needed:,} bytes "
            f"of JPEG data; the file has {len(data):,}",
        )


def _reduction(width: int, height: int, work_side: int, factors=None) -> int:
    """The reduction factor for an image of this size: 1 unless it is over twice ``work_side``."""
    longer, shorter = max(width, height), min(width, height)
    if longer <= 2 * work_side:
        return 1
    largest = max(1, min(longer // work_side, shorter // MIN_SIDE))
    if factors is None:
        return largest
    return next((factor for factor in factors if factor <= largest), 1)


def _open(stream, data: bytes | None, max_pixels: int, work_side: int) -> tuple[Image.Image, tuple[int, int]]:
    """Parse the header and check it; a large JPEG is set to decode at reduced scale.

    Returns the image and its declared (width, height), before any reduction.
    """
    image = Image.open(stream, formats=FORMATS)
    declared = image.size
    try:
        if image.format not in OPENED_FORMATS:
            raise ImageError("not_image", f"{image.format} images are not accepted; send one of {', '.join(FORMATS)}")
        if image.width * image.height > max_pixels:
            raise ImageError(
                "too_large",
                f"image is {image.width}x{image.height} pixels, more than the {max_pixels:,} allowed",
            )
        _check_fillable(image, data)
        if image.format in ("JPEG", "MPO"):
            factor = _reduction(image.width, image.height, work_side, factors=(8, 4, 2))
            if factor > 1:
                image.draft(None, (image.width // factor, image.height // factor))
    except BaseException:
        image.close()
        raise
    return image, declared


class OpenedImage:
    """An image whose header has been read and checked (step 1's checks, 1a's draft), not yet decoded.

    ``decoded_pixels`` is how many pixels ``load`` will decode it into (after
    any JPEG draft), so that a caller can wait for the memory first without
    parsing the header twice. Raises ImageError for what the header already
    shows to be unusable. Use it as a context manager, or ``close`` it.
    """

    def __init__(self, source: str | os.PathLike | bytes, max_pixels: int = MAX_PIXELS, work_side: int = WORK_SIDE):
        data = bytes(source) if isinstance(source, (bytes, bytearray)) else None
        self._work_side = work_side
        with _image_errors():
            self._image, self._full_size = _open(
                io.BytesIO(data) if data is not None else source, data, max_pixels, work_side
            )
        self.decoded_pixels = self._image.width * self._image.height

    def __enter__(self) -> OpenedImage:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._image.close()

    def load(self) -> LoadedImage:
        """Decode into upright 8-bit RGB (steps 1 to 3 above); the image is closed after."""
        image, full_size = self._image, self._full_size
        with _image_errors():
            try:
                image.load()
                method = TRANSPOSITIONS.get(image.getexif().get(ORIENTATION_TAG, 1))
                normal = _replace(image, _normalise(image))
                factor = _reduction(normal.width, normal.height, self._work_side)
                if factor > 1:
                    normal = _replace(normal, normal.reduce(factor))
                if method is not None:
                    normal = _replace(normal, normal.transpose(method))
                    full_size = (full_size[1], full_size[0]) if method in SWAPS else full_size
                pixels = _to_array(normal)
                normal.close()
            finally:
                image.close()
        if min(full_size) < MIN_SIDE or min(pixels.shape[:2]) < MIN_SIDE:
            raise ImageError(
                "too_small",
                f"image is {full_size[0]}x{full_size[1]} pixels; at least "
                f"{MIN_SIDE} px on each side is needed to judge a face",
            )
        return LoadedImage(pixels, full_size if full_size != (pixels.shape[1], pixels.shape[0]) else None)


def load_image(
    source: str | os.PathLike | bytes, max_pixels: int = MAX_PIXELS, work_side: int = WORK_SIDE
) -> LoadedImage:
    """Decode a file path or encoded bytes into upright 8-bit RGB (steps 1 to 3 above)."""
    with OpenedImage(source, max_pixels, work_side) as opened:
        return opened.load()


def _replace(old: Image.Image, new: Image.Image) -> Image.Image:
    """``new`` in place of ``old``, whose pixels are freed now rather than at the end."""
    if new is not old:
        old.close()
    return new


def _normalise(image: Image.Image) -> Image.Image:
    """The image in L, RGB or RGBA, converted as step 3 says (a new image unless it is already one of them)."""
    if image.mode in ("L", "RGB", "RGBA"):
        return image
    if image.mode in SIXTEEN_BIT_MODES:
        # Pillow's own convert("L") clips 16-bit values instead of scaling them.
        return Image.fromarray((np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8))
    if image.mode == "F":
        return Image.fromarray(np.asarray(image, dtype=np.float32).clip(0, 255).astype(np.uint8))
    if image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        return image.convert("RGBA")
    return image.convert("RGB")


def _to_array(image: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 from an L, RGB or RGBA image."""
    pixels = np.asarray(image)
    if image.mode == "L":
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if image.mode == "RGBA":
        return composite_on_white(pixels)
    return pixels


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Flatten straight (non-premultiplied) RGBA onto white, exactly in integers.

    ``c * a + 255 * (255 - a) + 127`` is at most 65152, so 16-bit integers
    hold it; rows are done a block at a time.
    """
    out = np.empty(rgba.shape[:2] + (3,), np.uint8)
    for top in range(0, rgba.shape[0], BLOCK_ROWS):
        block = rgba[top : top + BLOCK_ROWS].astype(np.uint16)
        alpha = block[:, :, 3:4]
        out[top : top + BLOCK_ROWS] = (block[:, :, :3] * alpha + 255 * (255 - alpha) + 127) // 255
    return out


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


def _nonzero_taps(indices: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each output's taps of non-zero weight, in their order, (out, most non-zero taps of any output).

    An output with fewer gets taps of weight 0 at its end. The triangle has at
    most ``ceil(2 * support)`` non-zero taps of its ``2 * ceil(support) + 1``
    (2 of 3 when enlarging), so a pass does up to a third less work; the sum
    is the same bit for bit, as ``acc + 0 * x == acc`` for finite ``x``.
    """
    used = weights != 0
    order = np.argsort(~used, axis=1, kind="stable")[:, : int(used.sum(axis=1).max())]
    return np.take_along_axis(indices, order, 1), np.take_along_axis(weights, order, 1)


def resize_axis(pixels: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """One pass of the triangle filter along ``axis`` (0 or 1) of (H, W, 3) pixels, in float64.

    Works a block of rows (or columns) at a time, so no float64 copy of a
    large image is made (the conversion of 8-bit samples is exact); the
    arithmetic per output value is the documented one.
    """
    indices, weights = _nonzero_taps(*_resize_taps(pixels.shape[axis], out_size))
    shape = [1, 1, 1]
    shape[axis] = out_size
    columns = [weights[:, k].reshape(shape) for k in range(indices.shape[1])]
    out_shape = list(pixels.shape)
    out_shape[axis] = out_size
    out = np.empty(out_shape, dtype=np.float64)
    across = 1 - axis
    for start in range(0, pixels.shape[across], RESIZE_BLOCK):
        part = (slice(None),) * across + (slice(start, start + RESIZE_BLOCK),)
        block = pixels[part].astype(np.float64)
        acc = np.empty(block.shape[:axis] + (out_size,) + block.shape[axis + 1 :], dtype=np.float64)
        taken, product = np.empty_like(acc), np.empty_like(acc)
        np.take(block, indices[:, 0], axis=axis, out=taken)
        np.multiply(columns[0], taken, out=acc)  # 0 + w[0] * x[j_0], exactly: both are >= 0
        for k in range(1, len(columns)):
            np.take(block, indices[:, k], axis=axis, out=taken)
            np.add(acc, np.multiply(columns[k], taken, out=product), out=acc)  # acc = acc + w[k] * x[j_k]
        out[part] = acc
    return out


def resize(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize (H, W, 3) pixels to (size, size, 3) float64, as documented above."""
    if pixels.shape[:2] == (size, size):
        # At scale 1 every output's taps weigh 0, 1, 0: the filter is the identity.
        return pixels.astype(np.float64)
    horizontal = resize_axis(pixels, size, axis=1)
    return resize_axis(horizontal, size, axis=0)


def to_model_input(pixels: np.ndarray, size: int) -> np.ndarray:
    """Centre square, resize and scale: (size, size, 3) float32 in [0, 255]."""
    return resize(center_square(pixels), size).astype(np.float32)


def preprocess(source: str | os.PathLike | bytes, size: int) -> np.ndarray:
    """Everything from a file or bytes to one model input."""
    return to_model_input(load_image(source).pixels, size)
