"""Classification and calibration metrics of P(fake) scores.

Every function takes ``labels`` (1 = fake, 0 = real) and ``p_fake`` (the
model's probability that the image is fake) and, where a decision is
needed, a ``threshold``: an image is called fake iff ``p_fake >= threshold``.
Metrics that need both classes (ROC AUC, balanced accuracy in the usual
sense) return ``None`` when one is missing, as happens for a single-source
slice, rather than a number that means nothing.

Calibration is judged on P(fake) itself, not on the top-label confidence:
15 equal-width bins over [0, 1], and the expected calibration error is
``sum_b (n_b / N) * |mean P(fake) in b - fraction fake in b|``. For two
classes this is the stricter of the two usual conventions (the top-label one
merges each bin with its mirror image around 0.5, which can only lower it),
and its diagram answers the question a user asks: "of the images called 80 %
fake, how many were?"

ROC AUC, the ROC curve, average precision and log loss are scikit-learn's;
this module fixes the conventions around them (which class is positive, None
for an undefined metric, the log-loss clipping). scikit-learn is imported on
first use: it takes seconds, which a command's ``--help`` should not wait for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ECE_BINS = 15
# Keeps log loss finite for float32 outputs that round to exactly 0 or 1.
LOG_LOSS_EPS = 1e-7


def validate(labels, p_fake) -> tuple[np.ndarray, np.ndarray]:
    """Labels as int64 0/1 and p_fake as float64 in [0, 1], or ValueError saying what is wrong."""
    labels = np.asarray(labels)
    p_fake = np.asarray(p_fake, dtype=np.float64)
    if labels.ndim != 1 or labels.shape != p_fake.shape:
        raise ValueError(
            f"labels and p_fake must be 1-D and of equal length, got {labels.shape} and {p_fake.shape}"
        )
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not (np.isfinite(p_fake).all() and (p_fake >= 0).all() and (p_fake <= 1).all()):
        raise ValueError("p_fake must hold probabilities in [0, 1]")
    return labels.astype(np.int64), p_fake


def _sklearn():
    from sklearn import metrics as sklearn_metrics

    return sklearn_metrics


def _both_classes(labels: np.ndarray) -> bool:
    return bool(labels.any() and not labels.all())


def predict(p_fake, threshold: float = 0.5) -> np.ndarray:
    """1 (fake) where ``p_fake >= threshold``, else 0 (real)."""
    return (np.asarray(p_fake, dtype=np.float64) >= threshold).astype(np.int64)


def confusion_matrix(labels, p_fake, threshold: float = 0.5) -> np.ndarray:
    """``[[true real, real called fake], [fake called real, true fake]]``."""
    labels, p_fake = validate(labels, p_fake)
    called = predict(p_fake, threshold)
    matrix = np.zeros((2, 2), dtype=np.int64)
    np.add.at(matrix, (labels, called), 1)
    return matrix


def accuracy(labels, p_fake, threshold: float = 0.5) -> float:
    labels, p_fake = validate(labels, p_fake)
    if labels.size == 0:
        raise ValueError("accuracy of no images is undefined")
    return float(np.mean(predict(p_fake, threshold) == labels))


def balanced_accuracy(labels, p_fake, threshold: float = 0.5) -> float | None:
    """Mean of the recall of reals and the recall of fakes; None without both."""
    matrix = confusion_matrix(labels, p_fake, threshold)
    totals = matrix.sum(axis=1)
    if (totals == 0).any():
        return None
    return float(np.mean(np.diag(matrix) / totals))


def roc_auc(labels, p_fake) -> float | None:
    """Area under the ROC curve (ties count half); None without both classes."""
    labels, p_fake = validate(labels, p_fake)
    if not _both_classes(labels):
        return None
    return float(_sklearn().roc_auc_score(labels, p_fake))


def selection_auc(labels, p_fake, sources, aligned_sources=frozenset()) -> float:
    """The mean ROC AUC over sources (0 where no source has both classes); with aligned pairs, the mean of
    the other sources' mean and the aligned sources' mean, so that the many aligned sources (one per
    decoder and original collection) do not outweigh the two fair pairs. What selects an epoch
    (``training.train``) and a head (``training.add_head``)."""
    labels, p_fake = validate(labels, p_fake)
    sources = np.asarray(sources)
    kinds = {False: [], True: []}
    for source in np.unique(sources):
        auc = roc_auc(labels[sources == source], p_fake[sources == source])
        if auc is not None:
            kinds[source in aligned_sources].append(auc)
    means = [float(np.mean(aucs)) for aucs in kinds.values() if aucs]
    return float(np.mean(means)) if means else 0.0


def recall_at_fpr(labels, p_fake, max_fpr: float) -> float | None:
    """Fakes caught at the lowest threshold that calls at most ``max_fpr`` of these reals fake.

    The threshold is chosen on these very images, so this is a ceiling for
    what a threshold set elsewhere (on ``valid``) can reach, not a figure to
    promise: when it is low, the ranking is what falls short, not the
    calibration. None without both classes.
    """
    labels, p_fake = validate(labels, p_fake)
    if not 0.0 <= max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in [0, 1], got {max_fpr}")
    if not _both_classes(labels):
        return None
    reals = np.sort(p_fake[labels == 0])[::-1]
    allowed = int(np.floor(max_fpr * reals.size + 1e-9))
    if allowed >= reals.size:
        return 1.0
    # Strictly above the first real that may not be called fake: ties with it stay real.
    return float(np.mean(p_fake[labels == 1] > reals[allowed]))


def best_accuracy(labels, p_fake) -> float | None:
    """The highest accuracy any threshold reaches on these images: a ceiling, like ``recall_at_fpr``."""
    labels, p_fake = validate(labels, p_fake)
    if labels.size == 0:
        return None
    order = np.argsort(-p_fake, kind="stable")
    scores, fake = p_fake[order], labels[order]
    # Calling the top k images fake, for every k at which the score changes (and none, k = 0).
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(scores)) + 1, [scores.size]])
    fakes_above = np.concatenate([[0], np.cumsum(fake)])[cuts]
    reals_below = (scores.size - fake.sum()) - (cuts - fakes_above)
    return float(np.max(fakes_above + reals_below) / scores.size)


@dataclass(frozen=True)
class RocCurve:
    false_positive_rate: np.ndarray
    true_positive_rate: np.ndarray
    # thresholds[i] gives the point (fpr[i], tpr[i]); the first is +inf, no image called fake.
    thresholds: np.ndarray


def roc_curve(labels, p_fake) -> RocCurve:
    """One point per distinct score, from (0, 0) to (1, 1)."""
    labels, p_fake = validate(labels, p_fake)
    if not _both_classes(labels):
        raise ValueError("a ROC curve needs both real and fake images")
    fpr, tpr, thresholds = _sklearn().roc_curve(labels, p_fake, drop_intermediate=False)
    return RocCurve(false_positive_rate=fpr, true_positive_rate=tpr, thresholds=thresholds)


def average_precision(labels, p_fake) -> float | None:
    """Sum over distinct thresholds of (recall gained) x (precision there); None without fakes."""
    labels, p_fake = validate(labels, p_fake)
    if not labels.any():
        return None
    return float(_sklearn().average_precision_score(labels, p_fake))


def log_loss(labels, p_fake, eps: float = LOG_LOSS_EPS) -> float:
    """Mean negative log-likelihood, with p_fake clipped to [eps, 1 - eps]."""
    labels, p_fake = validate(labels, p_fake)
    if labels.size == 0:
        raise ValueError("log loss of no images is undefined")
    return float(_sklearn().log_loss(labels, np.clip(p_fake, eps, 1.0 - eps), labels=(0, 1)))


@dataclass(frozen=True)
class ReliabilityBins:
    edges: np.ndarray  # (bins + 1,) from 0 to 1
    counts: np.ndarray  # images per bin
    mean_p_fake: np.ndarray  # NaN where a bin is empty
    fraction_fake: np.ndarray  # NaN where a bin is empty

    def to_json(self) -> list[dict]:
        """The non-empty bins, as plain numbers."""
        return [
            {
                "lower": float(self.edges[index]),
                "upper": float(self.edges[index + 1]),
                "count": int(self.counts[index]),
                "mean_p_fake": float(self.mean_p_fake[index]),
                "fraction_fake": float(self.fraction_fake[index]),
            }
            for index in np.nonzero(self.counts)[0]
        ]


def reliability_bins(labels, p_fake, bins: int = ECE_BINS) -> ReliabilityBins:
    """Equal-width bins of P(fake); bin k holds k/bins <= p < (k+1)/bins, and p = 1 the last."""
    labels, p_fake = validate(labels, p_fake)
    index = np.minimum((p_fake * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    sums = np.bincount(index, weights=p_fake, minlength=bins)
    fakes = np.bincount(index, weights=labels, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(counts > 0, sums / counts, np.nan)
        fraction = np.where(counts > 0, fakes / counts, np.nan)
    return ReliabilityBins(np.linspace(0.0, 1.0, bins + 1), counts, mean_p, fraction)


def expected_calibration_error(labels, p_fake, bins: int = ECE_BINS) -> float:
    table = reliability_bins(labels, p_fake, bins)
    if table.counts.sum() == 0:
        raise ValueError("calibration error of no images is undefined")
    filled = table.counts > 0
    gaps = np.abs(table.mean_p_fake[filled] - table.fraction_fake[filled])
    return float(np.sum(table.counts[filled] * gaps) / table.counts.sum())


def summary(labels, p_fake, threshold: float) -> dict:
    """Every metric above for one set of images, as JSON-ready numbers (None where undefined)."""
    labels, p_fake = validate(labels, p_fake)
    matrix = confusion_matrix(labels, p_fake, threshold)
    (true_real, false_fake), (false_real, true_fake) = matrix.tolist()
    reals, fakes = true_real + false_fake, false_real + true_fake
    return {
        "images": int(labels.size),
        "real": reals,
        "fake": fakes,
        "threshold": float(threshold),
        "accuracy": accuracy(labels, p_fake, threshold),
        "balanced_accuracy": balanced_accuracy(labels, p_fake, threshold),
        "roc_auc": roc_auc(labels, p_fake),
        "average_precision": average_precision(labels, p_fake),
        "log_loss": log_loss(labels, p_fake),
        "ece": expected_calibration_error(labels, p_fake),
        # Reals called fake: the error that wrongly accuses a person.
        "false_positive_rate": false_fake / reals if reals else None,
        # Fakes caught.
        "recall_fake": true_fake / fakes if fakes else None,
        # Ceilings, with thresholds chosen on these very images: how far the ranking would let
        # the accuracy and the fakes caught go (see recall_at_fpr).
        "best_accuracy": best_accuracy(labels, p_fake),
        "recall_fake_at_1pct_fpr": recall_at_fpr(labels, p_fake, 0.01),
        "recall_fake_at_3pct_fpr": recall_at_fpr(labels, p_fake, 0.03),
        "confusion": {
            "real_called_real": true_real,
            "real_called_fake": false_fake,
            "fake_called_real": false_real,
            "fake_called_fake": true_fake,
        },
        "mean_p_fake": float(p_fake.mean()),
    }
