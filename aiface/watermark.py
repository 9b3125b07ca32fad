"""The invisible watermarks of open image generators: which marks, how they are read, when one counts.

The reference pipelines of several open generators mark every image they make
with the ``invisible-watermark`` package's DWT-DCT method (``dwtDct``):

- Stable Diffusion XL (Stability AI's ``generative-models``, and diffusers'
  SDXL pipelines whenever that package is installed): the 48 bits of
  ``bin(0xB3EC907BB19E)[2:]``;
- FLUX.1 (Black Forest Labs' reference code): the bits of
  ``bin(0b001010101111111010000111100111001111010100101110)[2:]``, 46 of them
  (``bin`` drops the leading zeros);
- the original Stable Diffusion 1 and 2 scripts: the bytes ``StableDiffusionV1``
  (136 bits) and ``SDV2`` (32 bits).

``find_mark(rgb)`` decodes the pixels exactly as the package's
``WatermarkDecoder(kind, bits).decode(bgr, "dwtDct")`` does, bit for bit on the
same pixels (``tests/test_watermark.py`` checks it against the package),
without its run-time dependencies (OpenCV, PyWavelets and, for the package's
``__init__``, PyTorch); ``extension/src/watermark.js`` is the browser's mirror,
parity-tested on the same pixels. The steps:

1. the U channel of OpenCV's BGR -> YUV conversion, in one of three *domains*,
   the one in which a pipeline handed its image to the package:
   - ``8-bit`` (the SD 1/2 scripts mark the 8-bit image): OpenCV's integers,
     ``Y = (1868 B + 9617 G + 4899 R + 8192) >> 14``,
     ``U = clip(((B - Y) * 8061 + 128 * 16384 + 8192) >> 14, 0, 255)``;
   - ``float`` (the SDXL and FLUX.1 pipelines mark float pixels, 0 to 255,
     and round them to 8 bits afterwards): the 8-bit pixels as float32,
     ``Y = fma(B, 0.114, fma(G, 0.587, R * 0.299))``, ``U = fma(B - Y, 0.492, 0.5)``,
     every step rounded to float32 as OpenCV's vector code does it on a CPU
     with FMA (on one without, OpenCV itself differs in the last bit);
   - ``float-swapped``: the same with red and blue exchanged (diffusers'
     SDXL pipelines before 0.27 gave the package RGB where it expects BGR);
   the mark lives in U only (the package's scales are 0, 36, 36 for Y, U, V,
   and it reads two channels);
2. the approximation band of a one-level Haar DWT of U cut to a multiple of 4
   rows and columns, in PyWavelets' arithmetic (float64 for 8-bit U, float32
   for float U): pairs of rows first, then pairs of columns, each
   ``c * second + c * first`` with ``c = 0.7071067811865476``;
3. that band in 4 x 4 blocks (8 x 8 pixels), row by row: block ``n`` votes
   for bit ``n mod L`` (``L``, the mark's length); its vote is 1 when the
   largest absolute value in the block after its first (row-major), ``v``,
   has ``v mod 36 > 18``;
4. bit ``k`` is 1 when ``(ones / votes) * 255 > 127``.

Each mark is read in the domains its pipelines mark in; the best agreement counts.
A mark counts as found when at least ``MIN_AGREEMENT`` of its bits agree
(chosen above the best agreement any real photo in the project's data reached:
docs/reliability.md). Images under ``MIN_PIXELS`` are neither marked by the
package nor read; images over ``MAX_PIXELS`` are not read (no generator makes
them at native size, and a resized image has lost its mark), which bounds the
time and memory spent per image; pixels are read a band of rows at a time.

``python -m aiface.watermark extension/src/watermark.json`` writes the table the
extension reads.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np

from aiface.preprocess import ImageError, OpenedImage


def _bits_of_number(message: int) -> str:
    return bin(message)[2:]


def _bits_of_bytes(message: bytes) -> str:
    return "".join(f"{byte:08b}" for byte in message)


# The marks, in the order they are tried: the generator's name, the bits its
# reference code embeds, and the domains (step 1) its pipelines mark in.
MARKS = [
    {"name": "Stable Diffusion XL", "bits": _bits_of_number(0xB3EC907BB19E), "domains": ["float", "float-swapped"]},
    {"name": "FLUX.1", "bits": _bits_of_number(0b001010101111111010000111100111001111010100101110),
     "domains": ["float"]},
    {"name": "Stable Diffusion 1", "bits": _bits_of_bytes(b"StableDiffusionV1"), "domains": ["8-bit"]},
    {"name": "Stable Diffusion 2", "bits": _bits_of_bytes(b"SDV2"), "domains": ["8-bit"]},
]
DOMAINS = ("8-bit", "float", "float-swapped")
MIN_AGREEMENT = 0.85
MIN_PIXELS = 256 * 256
MAX_PIXELS = 5_000_000
# The package's parameters for dwtDct: the step of the U channel's quantiser, and the block side.
SCALE = 36
BLOCK = 4
HAAR = 0.7071067811865476
# OpenCV's float coefficients (float32), as float64: each product of two of
# them, or of one and an 8-bit value, is exact in float64, so rounding the
# float64 sum to float32 once is what a fused multiply-add gives.
_Y_BLUE, _Y_GREEN, _Y_RED, _U_SCALE = (float(np.float32(value)) for value in (0.114, 0.587, 0.299, 0.492))
# Pixel rows read at a time (a multiple of the 8 rows of a block): memory grows with the width only.
BAND_ROWS = 256


def _f32(values: np.ndarray) -> np.ndarray:
    """float64 values rounded to float32, kept as float64."""
    return values.astype(np.float32).astype(np.float64)


def _u_channel(rgb: np.ndarray, domain: str) -> np.ndarray:
    """OpenCV's U (COLOR_BGR2YUV) in a domain: int32 for 8-bit, float32 for the others."""
    red, green, blue = (0, 1, 2) if domain != "float-swapped" else (2, 1, 0)
    if domain == "8-bit":
        r, g, b = (rgb[:, :, channel].astype(np.int32) for channel in (red, green, blue))
        y = (b * 1868 + g * 9617 + r * 4899 + 8192) >> 14
        return np.clip(((b - y) * 8061 + (128 << 14) + 8192) >> 14, 0, 255)
    r, g, b = (rgb[:, :, channel].astype(np.float64) for channel in (red, green, blue))
    y = _f32(b * _Y_BLUE + _f32(g * _Y_GREEN + _f32(r * _Y_RED)))
    return (_f32(b - y) * _U_SCALE + 0.5).astype(np.float32)


def _haar_approximation(u: np.ndarray) -> np.ndarray:
    """The DWT's approximation band, rounded as PyWavelets rounds it (float32 stays float32)."""
    x = u if u.dtype == np.float32 else u.astype(np.float64)
    c = x.dtype.type(HAAR)
    rows = x[1::2] * c + x[0::2] * c
    return rows[:, 1::2] * c + rows[:, 0::2] * c


def _block_votes(rgb: np.ndarray, domain: str) -> np.ndarray:
    """One vote (bool) per 8 x 8 pixel block of a band whose sides are multiples of 8, row-major."""
    band = _haar_approximation(_u_channel(rgb, domain))
    rows, cols = band.shape[0] // BLOCK, band.shape[1] // BLOCK
    blocks = band.reshape(rows, BLOCK, cols, BLOCK).transpose(0, 2, 1, 3).reshape(rows * cols, BLOCK * BLOCK)
    return np.mod(np.abs(blocks[:, 1:]).max(axis=1), SCALE) > 0.5 * SCALE


def decode_bits(rgb: np.ndarray, domain: str, lengths) -> dict[int, str]:
    """The bits a dwtDct mark of each length would carry in a domain, '0'/'1' text keyed by length.

    ``rgb``: (height, width, 3) uint8 with at least ``MIN_PIXELS`` pixels.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (height, width, 3) uint8 pixels, got {rgb.shape} {rgb.dtype}")
    if rgb.shape[0] * rgb.shape[1] < MIN_PIXELS:
        raise ValueError(f"{rgb.shape[1]}x{rgb.shape[0]} pixels: under the {MIN_PIXELS} a mark needs")
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}: one of {', '.join(DOMAINS)}")
    block_rows, block_cols = rgb.shape[0] // 8, rgb.shape[1] // 8
    ones = {length: np.zeros(length, np.int64) for length in lengths}
    votes = {length: np.zeros(length, np.int64) for length in lengths}
    step = BAND_ROWS // 8
    for first in range(0, block_rows, step):
        rows = min(step, block_rows - first)
        band = _block_votes(rgb[8 * first:8 * (first + rows), :8 * block_cols], domain)
        index = first * block_cols + np.arange(rows * block_cols)
        for length in lengths:
            at = index % length
            ones[length] += np.bincount(at[band], minlength=length)
            votes[length] += np.bincount(at, minlength=length)
    # A bit without a vote (a picture under 8 pixels tall or wide) is 0, as the package's mean of nothing is NaN.
    return {length: "".join("1" if vote and (one / vote) * 255 > 127 else "0"
                            for one, vote in zip(ones[length], votes[length], strict=True))
            for length in lengths}


def agreements(rgb: np.ndarray) -> dict[str, int]:
    """For each mark, how many of its bits the pixels carry in the best of its domains (name -> matching bits)."""
    best = {mark["name"]: 0 for mark in MARKS}
    for domain in DOMAINS:
        marks = [mark for mark in MARKS if domain in mark["domains"]]
        decoded = decode_bits(rgb, domain, sorted({len(mark["bits"]) for mark in marks}))
        for mark in marks:
            matching = sum(a == b for a, b in zip(decoded[len(mark["bits"])], mark["bits"], strict=True))
            best[mark["name"]] = max(best[mark["name"]], matching)
    return best


def find_mark(rgb: np.ndarray) -> dict | None:
    """The best-agreeing mark at or above MIN_AGREEMENT: {name, bits, matching_bits}; None for none.

    Images outside MIN_PIXELS..MAX_PIXELS are not read (None).
    """
    if not MIN_PIXELS <= rgb.shape[0] * rgb.shape[1] <= MAX_PIXELS:
        return None
    matching = agreements(rgb)
    found = [{"name": mark["name"], "bits": len(mark["bits"]), "matching_bits": matching[mark["name"]]}
             for mark in MARKS if matching[mark["name"]] >= MIN_AGREEMENT * len(mark["bits"])]
    return max(found, key=lambda mark: mark["matching_bits"] / mark["bits"], default=None)


def read_watermark(data: bytes, hold: Callable[[int], AbstractContextManager] = nullcontext) -> dict | None:
    """The watermark finding for a file's bytes (find_mark on its upright 8-bit RGB); None for none or no image.

    ``hold(pixels)`` is entered once the header says how many pixels decoding will make and held while they are
    read: the service decodes a file a second time here and counts it in the same pixel budget as the first.
    """
    try:
        with OpenedImage(data, MAX_PIXELS) as opened:
            if opened.decoded_pixels < MIN_PIXELS:
                return None  # too small to hold a mark: known from the header, so not decoded a second time
            with hold(opened.decoded_pixels):
                loaded = opened.load()
                if loaded.full_size is not None:
                    return None  # decoded at reduced size: a mark would not survive it
                return find_mark(loaded.pixels)
    except ImageError:
        return None  # what is wrong with the image is the decoder's to report


def table() -> dict:
    """What the extension reads (extension/src/watermark.json)."""
    return {
        "_comment": ("Generated by `python -m aiface.watermark extension/src/watermark.json` from "
                     "aiface/watermark.py; do not edit."),
        "marks": MARKS,
        "min_agreement": MIN_AGREEMENT,
        "min_pixels": MIN_PIXELS,
        "max_pixels": MAX_PIXELS,
    }


def table_json() -> str:
    return json.dumps(table(), indent=2) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m aiface.watermark OUT.json")
    Path(sys.argv[1]).write_text(table_json(), encoding="utf-8")
