"""The metrics (scikit-learn's where they can be) against values worked out by hand."""

import numpy as np
import pytest

from training.evaluation import metrics

# Four reals, four fakes, with a tie between a real and a fake at 0.6.
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1])
P_FAKE = np.array([0.1, 0.2, 0.6, 0.7, 0.4, 0.6, 0.8, 0.9])


def test_confusion_accuracy_and_balanced_accuracy_at_a_threshold():
    # Called fake at 0.5: reals 0.6, 0.7 (2 false positives); fakes 0.6, 0.8, 0.9 (0.4 missed).
    assert metrics.confusion_matrix(LABELS, P_FAKE, 0.5).tolist() == [[2, 2], [1, 3]]
    assert metrics.accuracy(LABELS, P_FAKE, 0.5) == pytest.approx(5 / 8)
    assert metrics.balanced_accuracy(LABELS, P_FAKE, 0.5) == pytest.approx((2 / 4 + 3 / 4) / 2)
    # A score equal to the threshold counts as fake.
    assert metrics.confusion_matrix(LABELS, P_FAKE, 0.7).tolist() == [[3, 1], [2, 2]]
    assert metrics.confusion_matrix(LABELS, P_FAKE, 0.71).tolist() == [[4, 0], [2, 2]]


def test_balanced_accuracy_is_undefined_with_one_class():
    assert metrics.balanced_accuracy([1, 1], [0.9, 0.2]) is None
    assert metrics.accuracy([1, 1], [0.9, 0.2]) == 0.5


def test_roc_auc_counts_ties_as_half():
    # 16 (fake, real) pairs: the fake ranks higher in 12, ties in 1 (0.6 vs 0.6).
    assert metrics.roc_auc(LABELS, P_FAKE) == pytest.approx(12.5 / 16)
    assert metrics.roc_auc([0, 1], [0.3, 0.3]) == pytest.approx(0.5)
    assert metrics.roc_auc([0, 1, 1], [0.2, 0.1, 0.9]) == pytest.approx(0.5)
    assert metrics.roc_auc([1, 1], [0.2, 0.9]) is None


def test_roc_curve_steps_through_each_distinct_score():
    curve = metrics.roc_curve(LABELS, P_FAKE)
    np.testing.assert_allclose(curve.thresholds, [np.inf, 0.9, 0.8, 0.7, 0.6, 0.4, 0.2, 0.1])
    np.testing.assert_allclose(curve.false_positive_rate, [0, 0, 0, 0.25, 0.5, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve.true_positive_rate, [0, 0.25, 0.5, 0.5, 0.75, 1.0, 1.0, 1.0])
    # The trapezoid area under the points is the AUC counted by hand above (12.5 of 16 pairs).
    fpr, tpr = curve.false_positive_rate, curve.true_positive_rate
    area = np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)
    assert area == pytest.approx(12.5 / 16)
    with pytest.raises(ValueError, match="both real and fake"):
        metrics.roc_curve([1, 1], [0.2, 0.9])


def test_average_precision_by_hand():
    # Descending: 0.9 F, 0.8 F, 0.7 R, 0.6 {F, R}, 0.4 F, ...
    # recall steps 1/4 at precision 1, 1/4 at 1, 1/4 at 3/5 (tie group), 1/4 at 4/6.
    expected = 0.25 * (1 + 1 + 3 / 5 + 4 / 6)
    assert metrics.average_precision(LABELS, P_FAKE) == pytest.approx(expected)
    assert metrics.average_precision([0, 0], [0.1, 0.2]) is None


def test_log_loss_and_clipping():
    expected = -(np.log(0.8) + np.log(1 - 0.3)) / 2
    assert metrics.log_loss([1, 0], [0.8, 0.3]) == pytest.approx(expected)
    # A confident mistake costs -log(eps), not infinity, and one class alone is fine.
    assert metrics.log_loss([1], [0.0]) == pytest.approx(-np.log(metrics.LOG_LOSS_EPS))
    assert metrics.log_loss([0, 0], [0.0, 0.5]) == pytest.approx(-np.log(0.5) / 2)


def test_reliability_bins_and_ece():
    labels = np.array([0, 1, 1, 1, 0, 1])
    p_fake = np.array([0.0, 0.05, 0.5, 0.52, 0.95, 1.0])
    table = metrics.reliability_bins(labels, p_fake, bins=10)
    assert table.counts.tolist() == [2, 0, 0, 0, 0, 2, 0, 0, 0, 2]
    np.testing.assert_allclose(table.mean_p_fake[[0, 5, 9]], [0.025, 0.51, 0.975])
    np.testing.assert_allclose(table.fraction_fake[[0, 5, 9]], [0.5, 1.0, 0.5])
    assert np.isnan(table.mean_p_fake[1])
    expected = (2 * 0.475 + 2 * 0.49 + 2 * 0.475) / 6
    assert metrics.expected_calibration_error(labels, p_fake, bins=10) == pytest.approx(expected)
    assert [entry["count"] for entry in table.to_json()] == [2, 2, 2]


def test_ece_uses_15_bins_by_default_and_is_zero_when_calibrated():
    # In each bin the fraction of fakes equals the probability given.
    labels = np.array([1, 0, 0, 0, 0, 1, 1, 1, 1, 0])
    p_fake = np.array([0.2] * 5 + [0.8] * 5)
    assert metrics.expected_calibration_error(labels, p_fake) == pytest.approx(0.0)
    assert metrics.reliability_bins(labels, p_fake).counts.size == 15


def test_summary_holds_every_metric():
    block = metrics.summary(LABELS, P_FAKE, 0.5)
    assert block["images"] == 8 and block["real"] == 4 and block["fake"] == 4
    assert block["false_positive_rate"] == pytest.approx(0.5)
    assert block["recall_fake"] == pytest.approx(0.75)
    assert block["confusion"] == {
        "real_called_real": 2,
        "real_called_fake": 2,
        "fake_called_real": 1,
        "fake_called_fake": 3,
    }
    assert 0.75 <= block["best_accuracy"] <= 1.0 and block["recall_fake_at_3pct_fpr"] is not None
    only_fakes = metrics.summary([1, 1], [0.9, 0.2], 0.5)
    assert only_fakes["roc_auc"] is None and only_fakes["false_positive_rate"] is None
    assert only_fakes["recall_fake_at_1pct_fpr"] is None


def test_the_ceilings_choose_their_threshold_on_the_images_themselves():
    labels = np.array([0] * 100 + [1] * 4)
    reals = np.linspace(0.0, 0.5, 100)  # the top three reals: 0.4899, 0.4949, 0.5
    p_fake = np.concatenate([reals, [0.497, 0.6, 0.7, 0.1]])
    # At most 1 % of 100 reals: one may score above the line, which then sits at the second highest.
    assert metrics.recall_at_fpr(labels, p_fake, 0.01) == pytest.approx(0.75)
    assert metrics.recall_at_fpr(labels, p_fake, 0.0) == pytest.approx(0.5)
    assert metrics.recall_at_fpr(labels, p_fake, 1.0) == 1.0
    # Best: call the two top fakes (and no real) fake: 102 of 104 right.
    assert metrics.best_accuracy(labels, p_fake) == pytest.approx(102 / 104)
    assert metrics.recall_at_fpr([1, 1], [0.2, 0.9], 0.03) is None
    with pytest.raises(ValueError, match="max_fpr"):
        metrics.recall_at_fpr(labels, p_fake, 1.5)


def test_best_accuracy_counts_ties_as_one_threshold():
    # Equal scores cannot be split by any threshold.
    assert metrics.best_accuracy([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert metrics.best_accuracy([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.best_accuracy([1, 1, 0], [0.1, 0.2, 0.9]) == pytest.approx(2 / 3)  # all called fake


@pytest.mark.parametrize(
    "labels, p_fake, message",
    [([0, 2], [0.1, 0.2], "labels"), ([0, 1], [0.1, 1.5], "probabilities"), ([0, 1], [0.1], "equal length")],
)
def test_bad_input_is_refused_with_a_clear_error(labels, p_fake, message):
    with pytest.raises(ValueError, match=message):
        metrics.accuracy(labels, p_fake)


def test_selection_auc_weighs_the_aligned_sources_as_one_kind():
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 0])
    p_fake = np.array([0.1, 0.9, 0.1, 0.9, 0.9, 0.1, 0.9, 0.1, 0.5, 0.5])
    sources = np.array(["fair", "fair", "a1", "a1", "a2", "a2", "a3", "a3", "reals_only", "reals_only"])
    # fair: 1.0; aligned: a1 1.0, a2 0.0, a3 0.0 -> 1/3; a source with one class counts for nothing.
    assert metrics.selection_auc(labels, p_fake, sources, {"a1", "a2", "a3"}) == pytest.approx((1.0 + 1 / 3) / 2)
    assert metrics.selection_auc(labels, p_fake, sources) == pytest.approx(2.0 / 4)
    assert metrics.selection_auc(labels[8:], p_fake[8:], sources[8:]) == 0.0
