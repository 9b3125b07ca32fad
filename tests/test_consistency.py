import numpy as np
import pytest
import tensorflow as tf

from training.consistency import ConsistencyLoss


def probabilities(logits):
    """[p_real, p_fake] for logits log(p_fake / p_real)."""
    fake = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
    return tf.constant(np.stack([1.0 - fake, fake], axis=1), tf.float32)


def per_image(loss, labels, y_pred):
    return loss.call(tf.constant(labels), y_pred).numpy()


def test_twins_with_one_score_cost_only_their_cross_entropy():
    y_pred = probabilities([2.0, 2.0, -1.0, -1.0])
    labels = [1, 1, 0, 0]
    plain = per_image(ConsistencyLoss(0.0), labels, y_pred)
    np.testing.assert_allclose(plain, -np.log([0.8808, 0.8808, 0.7311, 0.7311]), rtol=1e-3)
    np.testing.assert_allclose(per_image(ConsistencyLoss(0.5), labels, y_pred), plain, rtol=1e-5)


def test_the_degraded_twin_pays_the_squared_logit_gap():
    y_pred = probabilities([-3.0, 1.0, 2.0, 2.5])  # a real and its degraded copy 4 logits apart
    labels = [0, 0, 1, 1]
    plain = per_image(ConsistencyLoss(0.0), labels, y_pred)
    extra = per_image(ConsistencyLoss(0.5), labels, y_pred) - plain
    np.testing.assert_allclose(extra, [0.0, 0.5 * 16.0, 0.0, 0.5 * 0.25], atol=1e-4)


def test_the_gap_pulls_the_degraded_view_towards_the_clean_one_never_back():
    logits = tf.Variable([-3.0, 1.0])
    labels = tf.constant([0, 0])
    with tf.GradientTape() as tape:
        fake = tf.sigmoid(logits)
        y_pred = tf.stack([1.0 - fake, fake], axis=1)
        # The weighted loss less the plain one: the gap term alone.
        gap = tf.reduce_sum(ConsistencyLoss(1.0).call(labels, y_pred) - ConsistencyLoss(0.0).call(labels, y_pred))
    grads = tape.gradient(gap, logits).numpy()
    assert grads[0] == pytest.approx(0.0, abs=1e-6)  # the clean view is held fixed
    assert grads[1] == pytest.approx(2 * 4.0, rel=1e-3)  # d/dz (z - (-3))^2 at z = 1


def test_a_negative_weight_is_refused_and_the_weight_survives_saving():
    with pytest.raises(ValueError, match="at least 0"):
        ConsistencyLoss(-0.1)
    restored = ConsistencyLoss.from_config(ConsistencyLoss(0.25).get_config())
    assert restored.weight == 0.25
