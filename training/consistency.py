"""The loss of a run that asks a draw and its degraded copy for the same score.

Measured on aiface 2.2.0 (the fair pairs' ``valid`` images, calibrated
logits): laundering (128 px, JPEG quality 40) moved real faces' logits 1.8
towards "fake" on average, and fakes' 0.7 towards "real", so the threshold set
on clean images called 11 % of the 140k sample's laundered FFHQ photos fake.
Training on degraded draws with their labels alone did not stop it. Here
every draw comes twice (``training.data.make_training_dataset(paired=True)``:
``[a0, b0, a1, b1, ...]``, ``b`` the degraded copy of ``a``), and the loss adds
to the cross-entropy of both the squared gap between ``b``'s logit and ``a``'s.
The clean view's logit is held fixed in that term (a stop-gradient), so the
degraded view is pulled to the clean one, never the other way: the clean
images, where the evidence is, keep deciding.
"""

from __future__ import annotations

import keras
from keras import ops

# Softmax outputs are clipped here before their logs: logits stay within about +-32.
_EPSILON = 1e-14


@keras.saving.register_keras_serializable(package="aiface")
class ConsistencyLoss(keras.losses.Loss):
    """Sparse categorical cross-entropy of every image, plus ``weight`` times the
    squared logit gap of each degraded view to its clean twin (on the degraded view)."""

    def __init__(self, weight: float, name: str = "consistency_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if not weight >= 0.0:
            raise ValueError(f"the consistency weight must be at least 0, got {weight}")
        self.weight = float(weight)

    def call(self, y_true, y_pred):
        cross_entropy = keras.losses.sparse_categorical_crossentropy(y_true, y_pred)
        clipped = ops.clip(y_pred, _EPSILON, 1.0)
        pairs = ops.reshape(ops.log(clipped[:, 1]) - ops.log(clipped[:, 0]), (-1, 2))
        gap = ops.square(pairs[:, 1] - ops.stop_gradient(pairs[:, 0]))
        penalty = ops.reshape(ops.stack([ops.zeros_like(gap), gap], axis=1), (-1,))
        return cross_entropy + self.weight * penalty

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}
