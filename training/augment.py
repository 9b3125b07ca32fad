"""Training-time augmentation, applied to real and fake images alike.

Outside the 140k sample, real and fake images here come from different
collections, and resolution history, JPEG quality and framing predict the
label (``../shared/data/README.md``). Randomising exactly those, with the
same distribution for both classes, leaves the generation artefacts as the
only signal that holds across every image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from training.launder import jpeg_recompress


@dataclass(frozen=True)
class AugmentConfig:
    min_crop: float = 0.75  # side of the random square crop, as a fraction of the short side
    downscale_prob: float = 0.5
    min_downscale: float = 0.4  # down to about 0.4x, then back up
    blur_prob: float = 0.2
    max_blur_radius: float = 1.2
    jitter_prob: float = 0.5
    jitter: float = 0.15  # brightness, contrast and saturation factors in 1 +- jitter
    jpeg_prob: float = 0.6
    jpeg_quality: tuple[int, int] = (30, 95)


def augment(pixels: np.ndarray, rng: np.random.Generator, config: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """A randomly cropped, flipped, resampled, blurred, jittered and re-compressed copy."""
    height, width = pixels.shape[:2]
    side = int(round(min(height, width) * rng.uniform(config.min_crop, 1.0)))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    image = Image.fromarray(pixels[top : top + side, left : left + side])
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < config.downscale_prob:
        small = max(16, int(round(side * rng.uniform(config.min_downscale, 1.0))))
        image = image.resize((small, small), Image.Resampling.BILINEAR, reducing_gap=None)
        image = image.resize((side, side), Image.Resampling.BILINEAR)
    if rng.random() < config.blur_prob:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, config.max_blur_radius)))
    if rng.random() < config.jitter_prob:
        for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            image = enhancer(image).enhance(rng.uniform(1 - config.jitter, 1 + config.jitter))
    result = np.asarray(image)
    if rng.random() < config.jpeg_prob:
        low, high = config.jpeg_quality
        result = jpeg_recompress(result, int(rng.integers(low, high + 1)))
    return result
