"""Calibration after training: a temperature for honest probabilities, a threshold for a stated false-positive rate.

Temperature scaling divides the logit ``z = log P(fake) - log P(real)`` by
one number ``T`` fitted on held-out images (``valid``) by minimising the
negative log-likelihood. For a softmax over two classes, dividing the final
Dense layer's kernel and bias by ``T`` gives exactly ``sigmoid(z / T)``, so
``calibrate`` folds ``T`` into the network: every runtime that runs the
stored model (server, TF.js) reports calibrated probabilities with no extra
step. The decision threshold is then chosen on the calibrated probabilities
so that at most ``target_fpr`` of the real faces in ``valid`` are called
fake: accusing a real person is the costly error.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from aiface.bundle import Bundle
from aiface.faces import FaceFinder
from aiface.pipeline import FACES, WHOLE_IMAGE
from training.data.launder import launder
from training.data.layout import Example
from training.evaluation import metrics
from training.evaluation.scoring import score_examples
from training.models.backbones import LOGITS_LAYER, PROBABILITIES_LAYER

# Temperatures searched, as log T: wide enough for any sane network.
LOG_T_RANGE = (np.log(0.01), np.log(100.0))
# log T to within 1e-6, a relative error of 1e-6 in T.
_LOG_T_TOLERANCE = 1e-6
# Probabilities are clipped this far from 0 and 1 before taking logits.
_P_EPS = 1e-12


def logits_of(p_fake) -> np.ndarray:
    """``log P(fake) - log P(real)``, taking ``P(real) = 1 - P(fake)``."""
    p = np.clip(np.asarray(p_fake, dtype=np.float64), _P_EPS, 1.0 - _P_EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(x) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -np.asarray(x, dtype=np.float64)))


def scaled_nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``sigmoid(logits / temperature)``."""
    signs = np.where(labels == 1, 1.0, -1.0)
    return float(np.mean(np.logaddexp(0.0, -signs * logits / temperature)))


def fit_temperature_to_logits(logits, labels) -> float:
    """The temperature minimising the NLL of ``sigmoid(logits / T)``.

    The NLL is convex in ``1 / T``, hence unimodal in ``log T``: SciPy's
    bounded scalar minimiser (Brent's method) searches ``log T`` over
    ``LOG_T_RANGE``. Perfectly separated data drive T to the range's lower
    end; constant logits carry no information and give 1.
    """
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.size == 0 or logits.shape != labels.shape:
        raise ValueError("need logits and labels of equal, non-zero length")
    if np.all(logits == logits.flat[0]):
        return 1.0
    result = minimize_scalar(
        lambda log_t: scaled_nll(logits, labels, float(np.exp(log_t))),
        bounds=LOG_T_RANGE,
        method="bounded",
        options={"xatol": _LOG_T_TOLERANCE},
    )
    if not result.success:
        raise RuntimeError(f"the temperature fit did not converge: {result.message}")
    return float(np.exp(result.x))


def fit_temperature(p_fake, labels) -> float:
    """Temperature scaling fitted on probabilities (see ``fit_temperature_to_logits``)."""
    return fit_temperature_to_logits(logits_of(p_fake), labels)


def pick_threshold(p_fake, labels, target_fpr: float = 0.01) -> float:
    """The lowest decision threshold that calls at most ``target_fpr`` of the reals fake.

    An image is called fake iff ``p >= threshold``. Allowing ``k =
    floor(target_fpr * reals)`` false positives, every threshold above the
    (k+1)-th highest real score and up to the next higher score makes the
    same decisions on these images; we return the middle of that interval,
    so float32 rounding at runtime cannot flip a decision made here. When no
    score lies above it, the threshold is just above it.
    """
    labels, p_fake = metrics.validate(labels, p_fake)
    if not 0.0 <= target_fpr <= 1.0:
        raise ValueError(f"target false-positive rate must be in [0, 1], got {target_fpr}")
    reals = np.sort(p_fake[labels == 0])[::-1]
    if reals.size == 0:
        raise ValueError("picking a threshold for a false-positive rate needs real images")
    allowed = int(np.floor(target_fpr * reals.size + 1e-9))
    if allowed >= reals.size:
        return 0.0
    boundary = reals[allowed]
    above = p_fake[p_fake > boundary]
    if above.size:
        return float((boundary + above.min()) / 2.0)
    return float(np.nextafter(np.float32(boundary), np.float32(np.inf)))


def pick_source_threshold(p_fake, labels, sources, target_fpr: float, max_source_fpr: float | None) -> float:
    """``pick_threshold`` for ``target_fpr`` overall, raised until no source's reals
    exceed ``max_source_fpr`` (None: no per-source limit)."""
    threshold = pick_threshold(p_fake, labels, target_fpr)
    if max_source_fpr is None:
        return threshold
    p_fake, labels, sources = np.asarray(p_fake, np.float64), np.asarray(labels), np.asarray(sources)
    for source in sorted(set(sources[labels == 0])):
        own = sources == source
        threshold = max(threshold, pick_threshold(p_fake[own], labels[own], max_source_fpr))
    return threshold


def fold_temperature(model: keras.Model, temperature: float) -> None:
    """Divide the final Dense layer's kernel and bias by ``temperature``, in place.

    That layer is ``logits``; models saved before it existed end in a Dense
    ``probabilities`` layer with a softmax activation.
    """
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    names = {layer.name for layer in model.layers}
    layer = model.get_layer(LOGITS_LAYER if LOGITS_LAYER in names else PROBABILITIES_LAYER)
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel / temperature, bias / temperature])


@dataclass(frozen=True)
class Calibration:
    temperature: float  # fitted now; the bundle's metadata holds the product with any earlier one
    threshold: float
    target_fpr: float
    summary: dict


def _source_false_positive_rates(p_fake, labels, sources, threshold: float) -> dict[str, float]:
    return {
        source: float(np.mean(p_fake[(sources == source) & (labels == 0)] >= threshold))
        for source in sorted(set(sources[labels == 0]))
    }


def calibrate(
    bundle: Bundle,
    examples: list[Example],
    target_fpr: float = 0.01,
    batch_size: int = 64,
    progress: str | None = "calibrate",
    max_source_fpr: float | None = None,
    laundered: bool = False,
    finder: FaceFinder | None = None,
) -> Calibration:
    """Fit T on ``examples`` (the valid split), fold it into the model, pick the threshold.

    The threshold calls at most ``target_fpr`` of all real faces fake and,
    with ``max_source_fpr``, at most that share of any one source's real
    faces: an overall rate can hide one kind of photo (one camera, one
    collection) whose owners are accused far more often. With ``laundered``
    the same limits also hold for laundered copies of the images
    (``training.data.launder``: downscaled and re-compressed, as a photo passed
    around social networks is), at the cost of fakes caught on clean ones;
    the temperature is still fitted on the images as they are. With ``finder`` the images are scored as
    the service scores them (``aiface.pipeline``, faces found); without, their whole centred square.

    Writes ``temperature``, ``threshold``, ``target_fpr`` and
    ``metrics["calibration"]`` into ``bundle.metadata``. Calibrating an
    already calibrated bundle fits the remaining correction and multiplies it
    in, so the metadata's temperature always refers to the trained network.
    """
    scores = score_examples(bundle, examples, batch_size=batch_size, progress=progress, finder=finder)
    if not scores.examples:
        raise ValueError("no readable images to calibrate on")
    washed = (
        score_examples(bundle, examples, transform=launder, batch_size=batch_size,
                       progress=progress and f"{progress} (laundered)", finder=finder)
        if laundered else None
    )
    labels = scores.labels
    temperature = fit_temperature_to_logits(scores.logits, labels)
    fold_temperature(bundle.model, temperature)
    calibrated = sigmoid(scores.logits / temperature)
    sources = scores.sources
    threshold = pick_source_threshold(calibrated, labels, sources, target_fpr, max_source_fpr)
    if washed is not None:
        washed_p = sigmoid(washed.logits / temperature)
        threshold = max(threshold, pick_source_threshold(washed_p, washed.labels, washed.sources, target_fpr,
                                                         max_source_fpr))
    at_threshold = metrics.summary(labels, calibrated, threshold)
    summary = {
        "images": int(labels.size),
        "skipped": len(scores.skipped),
        "fitted_temperature": temperature,
        "log_loss_before": metrics.log_loss(labels, scores.p_fake),
        "log_loss_after": at_threshold["log_loss"],
        "ece_before": metrics.expected_calibration_error(labels, scores.p_fake),
        "ece_after": at_threshold["ece"],
        "false_positive_rate": at_threshold["false_positive_rate"],
        "recall_fake": at_threshold["recall_fake"],
        "max_source_fpr": max_source_fpr,
        "source_false_positive_rates": _source_false_positive_rates(calibrated, labels, sources, threshold),
        "laundered": laundered,
        "scored": FACES if finder is not None else WHOLE_IMAGE,
    }
    if washed is not None:
        on_washed = metrics.summary(washed.labels, washed_p, threshold)
        summary["laundered_false_positive_rate"] = on_washed["false_positive_rate"]
        summary["laundered_recall_fake"] = on_washed["recall_fake"]
        summary["laundered_source_false_positive_rates"] = _source_false_positive_rates(
            washed_p, washed.labels, washed.sources, threshold)
    metadata = bundle.metadata
    metadata.temperature = float(metadata.temperature * temperature)
    metadata.threshold = threshold
    metadata.target_fpr = float(target_fpr)
    metadata.metrics["calibration"] = summary
    return Calibration(temperature, threshold, float(target_fpr), summary)
