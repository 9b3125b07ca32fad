"""Training-time augmentation, applied to real and fake images alike.

Outside the fair pairs, real and fake images here come from different
collections, and resolution history, JPEG quality and framing predict the
label (``../shared/data/README.md``). Randomising exactly those, with the
same distribution for both classes, leaves the generation artefacts as the
only signal that holds across every image.

Four stages, so that the artefacts are seen at the scale the model scores
them: ``degrade`` (on the decoded pixels, with probability
``degrade_prob``: resampling, blur, colour jitter, JPEG re-compression, the
evaluation's laundering); ``zoom_out`` (with probability ``zoom_out_prob``,
the image shrunk by the shared resize and set at a random place on another
training image, of either class: a face crop taken from a larger photo has
whatever surrounds the face at its edges); ``reframe`` (with probability
``reframe_prob``, a random square window of the image, which the shared
preprocessing then resizes to the model's size exactly as it resizes a face
cut out of a larger photo); then, after the shared preprocessing has brought
the image to the model's size, ``random_crop``: a crop and a flip without any
resampling.
Degrading every image on every draw teaches the network that clean images
are rare and hides the artefacts; measured on the 140k sample, degrading 30 %
of the draws and cropping natively lifted ROC AUC from 0.86 to about 0.90.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from aiface.preprocess import center_square, resize
from training.data.launder import jpeg_recompress, launder


@dataclass(frozen=True)
class AugmentConfig:
    degrade_prob: float = 0.3  # chance that a draw is degraded at all; the steps below then apply each by chance
    launder_prob: float = 0.3  # the evaluation's laundering (128 px, JPEG quality 40) instead of the steps below
    downscale_prob: float = 0.5
    min_downscale: float = 0.4  # down to about 0.4x, then back up
    blur_prob: float = 0.3
    max_blur_radius: float = 1.2
    jitter_prob: float = 0.5
    jitter: float = 0.15  # brightness, contrast and saturation factors in 1 +- jitter
    jpeg_prob: float = 0.6
    jpeg_quality: tuple[int, int] = (30, 95)
    # Chance that a draw is a square window of the image, enlarged to the model's size by the shared resize,
    # as a face crop is: the training images are already framed, so without it the model never sees the
    # resize every face cut out of a larger photo goes through.
    reframe_prob: float = 0.0
    min_reframe: float = 0.7  # the window's side, at least this fraction of the image's shorter side
    # Chance that a draw is shrunk onto another training image: measured on aiface 2.1.0, the fakes' face crops
    # from 1024 px scenes were caught 38 % of the time where the crops of the images alone were caught 97 %,
    # because the crop's edges showed the scene around the face. The surround comes from either class, so
    # that only the face in the middle tells the label.
    zoom_out_prob: float = 0.0
    min_zoom_out: float = 0.7  # the shrunk image's side, at least this fraction of the frame's

    def __post_init__(self):
        for name in ("degrade_prob", "launder_prob", "downscale_prob", "blur_prob", "jitter_prob", "jpeg_prob",
                     "reframe_prob", "min_reframe", "zoom_out_prob", "min_zoom_out"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")


def degrade(pixels: np.ndarray, rng: np.random.Generator, config: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """With probability ``degrade_prob`` a resampled, blurred, jittered or re-compressed copy; else ``pixels``."""
    if rng.random() >= config.degrade_prob:
        return pixels
    if rng.random() < config.launder_prob:
        return launder(pixels)
    height, width = pixels.shape[:2]
    image = Image.fromarray(pixels)
    if rng.random() < config.downscale_prob:
        factor = rng.uniform(config.min_downscale, 1.0)
        small = (max(16, round(width * factor)), max(16, round(height * factor)))
        image = image.resize(small, Image.Resampling.BILINEAR, reducing_gap=None)
        image = image.resize((width, height), Image.Resampling.BILINEAR)
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


def zoom_out(pixels: np.ndarray, rng: np.random.Generator, surround: np.ndarray,
             config: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """With probability ``zoom_out_prob`` the centred square of ``pixels``, shrunk by the shared resize to between
    ``min_zoom_out`` and all of its side, at a random place on ``surround`` (resized to that side): float64 pixels.
    Else ``pixels``."""
    if rng.random() >= config.zoom_out_prob:
        return pixels
    square = center_square(pixels)
    side = square.shape[0]
    inner = max(1, round(side * rng.uniform(config.min_zoom_out, 1.0)))
    frame = resize(center_square(surround), side)
    top, left = (int(v) for v in rng.integers(0, side - inner + 1, 2))
    frame[top : top + inner, left : left + inner] = resize(square, inner)
    return frame


def reframe(pixels: np.ndarray, rng: np.random.Generator, config: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """With probability ``reframe_prob`` a random square window of ``pixels`` (a view, nothing resampled), its side
    between ``min_reframe`` and all of the shorter side; else ``pixels``."""
    if rng.random() >= config.reframe_prob:
        return pixels
    height, width = pixels.shape[:2]
    shorter = min(height, width)
    side = max(1, round(shorter * rng.uniform(config.min_reframe, 1.0)))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    return pixels[top : top + side, left : left + side]


def random_crop(model_input: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``size`` x ``size`` window of a model input, flipped half the time: pixels move, none is resampled."""
    height, width = model_input.shape[:2]
    if size > min(height, width):
        raise ValueError(f"crop of {size} px from a {width}x{height} input")
    top = int(rng.integers(0, height - size + 1))
    left = int(rng.integers(0, width - size + 1))
    crop = model_input[top : top + size, left : left + size]
    return crop[:, ::-1] if rng.random() < 0.5 else crop
