"""Custom Keras layers every model of ours may contain.

Importing this module registers them, so that a saved model deserialises
wherever it is loaded (service, evaluation, export) without the training
package.

The second-order layers exist because, measured on the fair pairs, the
evidence that tells a generated face from a photo lies in how mid-level
feature channels vary together, which global average pooling throws away
(covariance features of a frozen ImageNet base beat its average-pooled head
by 0.09 ROC AUC on the 140k sample). Both are size-agnostic: they summarise a
feature map over its positions, so a model trained on crops scores the full
frame with the same weights.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops


@keras.saving.register_keras_serializable(package="aiface")
class RGBToBGR(layers.Layer):
    """ResNet50's ImageNet weights expect BGR input."""

    def call(self, inputs):
        return ops.flip(inputs, axis=-1)


@keras.saving.register_keras_serializable(package="aiface")
class CovariancePooling(layers.Layer):
    """(N, H, W, C) -> (N, C(C+1)/2): the channel covariance over positions.

    The upper triangle of the covariance (the matrix is symmetric), then a
    signed square root (it evens out the heavy-tailed magnitudes of
    covariances) and L2 normalisation scaled by sqrt(d), so that every value
    has unit mean square whatever the image's contrast or the map's size.
    """

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = int(input_shape[-1])
        rows, cols = np.triu_indices(channels)
        self.channels = channels
        self.upper = (rows * channels + cols).astype("int32")

    def call(self, inputs):
        flat = ops.reshape(inputs, (ops.shape(inputs)[0], -1, self.channels))
        centred = flat - ops.mean(flat, axis=1, keepdims=True)
        positions = ops.cast(ops.shape(flat)[1], inputs.dtype)
        covariance = ops.matmul(ops.transpose(centred, (0, 2, 1)), centred) / positions
        upper = ops.take(ops.reshape(covariance, (-1, self.channels * self.channels)), self.upper, axis=1)
        rooted = ops.sign(upper) * ops.sqrt(ops.abs(upper) + self.epsilon)
        return unit_mean_square(rooted, self.epsilon)

    def compute_output_shape(self, input_shape):
        channels = int(input_shape[-1])
        return (input_shape[0], channels * (channels + 1) // 2)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="aiface")
class MeanStdPooling(layers.Layer):
    """(N, H, W, C) -> (N, 2C): each channel's mean and standard deviation over positions."""

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, inputs):
        mean = ops.mean(inputs, axis=(1, 2))
        variance = ops.mean(ops.square(inputs - mean[:, None, None, :]), axis=(1, 2))
        return ops.concatenate([mean, ops.sqrt(variance + self.epsilon)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * int(input_shape[-1]))

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="aiface")
class LargestHead(layers.Layer):
    """(N, K) -> (N, 1): the largest of K heads' margins.

    A model with a second head (``training.add_head``) calls an image fake when either head does:
    each head's margin is shifted so that 0 is its own threshold, so the largest margin is above 0
    exactly when one head is, and a head that learnt one kind of fake cannot be outvoted by another
    that never saw it (an average would dilute both).
    """

    def call(self, inputs):
        return ops.max(inputs, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)


def unit_mean_square(x, epsilon: float):
    """x scaled to an L2 norm of sqrt(d) along its last axis."""
    size = float(x.shape[-1])
    return x * ops.rsqrt(ops.mean(ops.square(x), axis=-1, keepdims=True) + epsilon / size)
