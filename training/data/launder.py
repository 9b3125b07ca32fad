"""Image laundering: what a social network or a fraudster does to a picture.

Plain functions of 8-bit RGB pixels (H, W, 3) that return 8-bit RGB pixels,
used by the evaluation's robustness sweep and shortcut audit and reusable as
training augmentation. The standard laundering of this project (the data
README's) is ``launder``: downscale so the longest side is 128 px, then
re-save as JPEG quality 40. ``blur`` and ``down_up`` make a photo smoother
without changing its size: the shortcut aligned pairs invite (a
reconstruction is a little smoother than its original), so real photos
treated so must not be called fake.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

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


BLUR_SIGMA = 1.2
DOWN_UP_FACTOR = 0.5


def blur(pixels: np.ndarray, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """A Gaussian blur of standard deviation ``sigma`` px (Pillow's radius is the standard deviation)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    return np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(sigma)))


def down_up(pixels: np.ndarray, factor: float = DOWN_UP_FACTOR) -> np.ndarray:
    """Downscaled by ``factor`` (bicubic, antialiased) and upscaled back to the same size (bicubic)."""
    if not 0 < factor <= 1:
        raise ValueError(f"factor must be in (0, 1], got {factor}")
    height, width = pixels.shape[:2]
    small = Image.fromarray(pixels).resize((max(1, round(width * factor)), max(1, round(height * factor))),
                                           Image.BICUBIC)
    return np.asarray(small.resize((width, height), Image.BICUBIC))
