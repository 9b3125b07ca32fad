"""Scoring an image much larger than the model input.

Downscaling a 3000 px photo to 224 px blurs away the fine texture that
generators leave behind. For such an image we also score a grid of crops
taken at native resolution (each exactly ``size`` x ``size`` pixels, so
``training.preprocess`` passes them through unresized) from the same centred
square the model was trained on, and combine the crops with the downscaled
whole.

Whether this beats plain downscaling has to be measured on large originals
(``benchmarks/multicrop_vs_downscale.py``); the service keeps it off unless
``MULTICROP`` is set.
"""

from __future__ import annotations

import numpy as np

from training.preprocess import center_square, to_model_input


def is_large(pixels: np.ndarray, size: int, min_factor: float) -> bool:
    return min(pixels.shape[:2]) >= min_factor * size


def crop_inputs(pixels: np.ndarray, size: int, grid: int) -> list[np.ndarray]:
    """``grid`` x ``grid`` native-resolution crops spread evenly over the centred square."""
    square = center_square(pixels)
    side = square.shape[0]
    if side < size:
        raise ValueError(f"image side {side} is smaller than the crop size {size}")
    offsets = np.linspace(0, side - size, grid).round().astype(int) if grid > 1 else [(side - size) // 2]
    return [
        to_model_input(square[top : top + size, left : left + size], size)
        for top in offsets
        for left in offsets
    ]


def model_inputs(pixels: np.ndarray, size: int, grid: int) -> list[np.ndarray]:
    """The downscaled whole first, then the crops."""
    return [to_model_input(pixels, size), *crop_inputs(pixels, size, grid)]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def _sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + np.exp(-z)))


def mean_log_odds(probabilities) -> float:
    """The probability whose log-odds are the mean of the inputs' log-odds."""
    return _sigmoid(_logit(np.asarray(probabilities, dtype=np.float64)).mean())


def combine(probabilities: list[float]) -> float:
    """Whole image and crops weigh half each, averaged as log-odds.

    Log-odds keep one confident crop from being drowned by many unsure ones
    the way a plain mean of probabilities would; giving the whole image half
    the weight keeps the global view (face shape, lighting) as important as
    all the local texture together.
    """
    whole, crops = probabilities[0], probabilities[1:]
    if not crops:
        return float(whole)
    return _sigmoid(0.5 * _logit(np.float64(whole)) + 0.5 * _logit(mean_log_odds(crops)))
