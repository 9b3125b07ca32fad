"""Image laundering: what a social network or a fraudster does to a picture.

Plain functions of 8-bit RGB pixels (H, W, 3) that return 8-bit RGB pixels,
used by the evaluation's robustness sweep and shortcut audit and reusable as
training augmentation. The standard laundering of this project (the data
README's) is ``launder``: downscale so the longest side is 128 px, then
re-save as JPEG quality 40.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

LAUNDER_SIZE = 128
LAUNDER_QUALITY = 40


def jpeg_recompress(pixels: np.ndarray, quality: int) -> np.ndarray:
    """Encode as baseline JPEG at ``quality`` (1-100; Pillow's default 4:2:0 chroma) and decode again."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as image:
        return np.asarray(image.convert("RGB"))


def downscale(pixels: np.ndarray, size: int) -> np.ndarray:
    """Shrink so the longest side is ``size`` px, keeping the aspect ratio.

    Bicubic with antialiasing, as most web services resize; images already
    that small are returned unchanged, since nothing is lost by not
    enlarging them.
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    height, width = pixels.shape[:2]
    longest = max(height, width)
    if longest <= size:
        return pixels
    new_size = (max(1, round(width * size / longest)), max(1, round(height * size / longest)))
    return np.asarray(Image.fromarray(pixels).resize(new_size, Image.BICUBIC))


def launder(pixels: np.ndarray) -> np.ndarray:
    """The standard laundering: longest side to 128 px, then JPEG quality 40."""
    return jpeg_recompress(downscale(pixels, LAUNDER_SIZE), LAUNDER_QUALITY)
