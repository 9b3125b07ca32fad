"""Custom Keras layers every model of ours may contain; importing this module registers them for deserialisation."""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="aiface")
class RGBToBGR(layers.Layer):
    """ResNet50's ImageNet weights expect BGR input."""

    def call(self, inputs):
        return ops.flip(inputs, axis=-1)
