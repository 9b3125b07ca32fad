"""Grad-CAM: where in the scored crop the evidence for the model's verdict lies.

For the last convolutional block's feature map ``A`` (the base's output: for
EfficientNet-Lite0 its ``head_activation``, for ResNet50 ``conv5_block3_out``)
and the verdict's log-odds ``z`` (``logit_fake - logit_real`` before the final
softmax, negated when the verdict is "real"), each channel ``k`` is weighted by
the spatial mean of ``dz/dA_k``; the map is ``ReLU(sum_k weight_k * A_k)``,
divided by its maximum so that it lies in [0, 1] (all zero when nothing speaks
for the verdict).

What it shows: which parts of the crop raised the score the model gave.
What it does not show: which pixels are "fake". The map is as coarse as the
feature map (7 x 7 cells for a 224 px model, upsampled smoothly), it shows
evidence for a verdict that may itself be wrong, and it is as meaningful for
a real photo called real as for a fake one.
"""

from __future__ import annotations

import io

import keras
import numpy as np
import tensorflow as tf
from matplotlib import colormaps
from PIL import Image

from training.backbones import base_of

# Opacity of the strongest evidence; weak evidence fades to transparent, so
# the image stays visible under the overlay.
MAX_ALPHA = 0.6
COLORMAP = "inferno"


class GradCam:
    """Grad-CAM maps of a classifier built by ``training.backbones.build_model``."""

    def __init__(self, model: keras.Model):
        base = base_of(model)
        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        split = layers.index(base)
        before, after, final = layers[:split], layers[split + 1 : -1], layers[-1]
        size = model.input_shape[1]

        def forward(image, sign):
            x = image
            for layer in before:
                x = layer(x)
            features = base(x, training=False)
            with tf.GradientTape() as tape:
                tape.watch(features)
                h = features
                for layer in after:
                    h = layer(h)
                logits = tf.matmul(h, final.kernel) + final.bias
                evidence = sign * (logits[:, 1] - logits[:, 0])
            gradients = tape.gradient(evidence, features)
            weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
            return tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[0]

        # Traced once: an eager tape through EfficientNet costs several times more.
        self._forward = tf.function(
            forward,
            input_signature=[tf.TensorSpec((1, size, size, 3), tf.float32), tf.TensorSpec((), tf.float32)],
            autograph=False,
        )

    def heatmap(self, model_input: np.ndarray, fake: bool) -> np.ndarray:
        """(h, w) float32 in [0, 1] at the feature map's resolution.

        ``model_input``: one (size, size, 3) input; ``fake``: explain a "fake"
        verdict (else a "real" one).
        """
        sign = tf.constant(1.0 if fake else -1.0)
        cam = self._forward(tf.constant(model_input[None], tf.float32), sign).numpy().astype(np.float64)
        peak = cam.max()
        if not np.isfinite(peak) or peak <= 0:
            return np.zeros(cam.shape, np.float32)
        # Rounded, so that float noise in the last bits cannot change the PNG.
        return np.round(cam / peak, 4).astype(np.float32)


def render_png(heatmap: np.ndarray, width: int, height: int) -> bytes:
    """The map upsampled (bilinear) to width x height as an RGBA overlay PNG."""
    levels = np.round(heatmap * 255).astype(np.uint8)
    scaled = np.asarray(Image.fromarray(levels).resize((width, height), Image.BILINEAR))
    rgba = colormaps[COLORMAP](scaled, bytes=True)
    rgba[:, :, 3] = np.round(scaled.astype(np.float64) * MAX_ALPHA).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
