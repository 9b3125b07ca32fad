"""Grad-CAM: where in the scored crop the evidence for the model's verdict lies.

For each feature map ``A`` the head pools (for the average-pooled head the
base's output, e.g. EfficientNet-Lite0's ``head_activation``; for the
second-order head also the intermediate maps whose covariance it takes) and
the verdict's log-odds ``z`` (``logit_fake - logit_real``, negated when the
verdict is "real"), each channel ``k`` is weighted by the spatial mean of
``dz/dA_k``; the terms ``sum_k weight_k * A_k`` of all maps are brought to
the finest map's size (bilinear) and summed, and the map is the ReLU of the
sum, divided by its maximum so that it lies in [0, 1] (all zero when nothing
speaks for the verdict).

What it shows: which parts of the crop raised the score the model gave.
What it does not show: which pixels are "fake". The map is as coarse as the
finest feature map (32 x 32 cells for a 256 px second-order model, 7 x 7
for the 224 px average-pooled one, upsampled smoothly), it shows
evidence for a verdict that may itself be wrong, and it is as meaningful for
a real photo called real as for a fake one.

Rendering the overlay needs only numpy and Pillow; Keras and TensorFlow are
imported when a ``GradCam`` is made.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import keras

# Opacity of the strongest evidence; weak evidence fades to transparent, so
# the image stays visible under the overlay.
MAX_ALPHA = 0.6
# matplotlib's "inferno" sampled every 16 levels (and at 255), as 8-bit RGB;
# linear between them it is within 6 of matplotlib's 256 colours, so that
# serving needs no plotting library.
INFERNO = (
    (0, 0, 3),
    (10, 7, 35),
    (32, 12, 74),
    (60, 9, 101),
    (87, 15, 109),
    (112, 25, 110),
    (137, 34, 105),
    (163, 43, 97),
    (187, 55, 84),
    (209, 70, 67),
    (228, 90, 49),
    (241, 114, 29),
    (249, 142, 8),
    (251, 172, 16),
    (248, 203, 52),
    (241, 233, 104),
    (252, 254, 164),
)
INFERNO_LEVELS = (*range(0, 256, 16), 255)


def _colour_table() -> np.ndarray:
    """(256, 3) uint8: the colour of each heat level."""
    anchors = np.asarray(INFERNO, np.float64)
    levels = np.arange(256)
    channels = [np.interp(levels, INFERNO_LEVELS, anchors[:, channel]) for channel in range(3)]
    return np.round(np.stack(channels, axis=1)).astype(np.uint8)


COLOURS = _colour_table()


class GradCam:
    """Grad-CAM maps of a classifier built by ``training.models.backbones.build_model``."""

    def __init__(self, model: keras.Model):
        import keras
        import tensorflow as tf

        # The convolutional base: the classifier's first nested model (as
        # ``training.models.backbones.base_of`` finds it).
        base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        split = layers.index(base)
        before, after, final = layers[:split], layers[split + 1 : -1], layers[-1]
        # A final Softmax follows a Dense layer giving logits; older models end in a softmax Dense.
        ends_in_softmax = isinstance(final, keras.layers.Softmax)
        size = model.input_shape[1]

        def forward(image, sign):
            x = image
            for layer in before:
                x = layer(x)
            features = base(x, training=False)
            # A second-order model's base gives several maps, all pooled by the head: each
            # map's Grad-CAM term is brought to the finest map's size and they are summed.
            maps = list(features) if isinstance(features, (list, tuple)) else [features]
            with tf.GradientTape() as tape:
                tape.watch(maps)
                h = maps if len(maps) > 1 else maps[0]
                for layer in after:
                    h = layer(h)
                logits = h if ends_in_softmax else tf.matmul(h, final.kernel) + final.bias
                evidence = sign * (logits[:, 1] - logits[:, 0])
            gradients = tape.gradient(evidence, maps)
            finest = maps[0].shape[1:3]
            total = 0.0
            for feature, gradient in zip(maps, gradients, strict=True):
                weights = tf.reduce_mean(gradient, axis=(1, 2), keepdims=True)
                term = tf.reduce_sum(weights * feature, axis=-1, keepdims=True)
                total += tf.image.resize(term, finest, method="bilinear") if term.shape[1:3] != finest else term
            return tf.nn.relu(total[..., 0])[0]

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
        sign = np.float32(1.0 if fake else -1.0)
        cam = self._forward(np.asarray(model_input[None], np.float32), sign).numpy().astype(np.float64)
        peak = cam.max()
        if not np.isfinite(peak) or peak <= 0:
            return np.zeros(cam.shape, np.float32)
        # Rounded, so that float noise in the last bits cannot change the PNG.
        return np.round(cam / peak, 4).astype(np.float32)


def render_png(heatmap: np.ndarray, width: int, height: int) -> bytes:
    """The map upsampled (bilinear) to width x height as an RGBA overlay PNG."""
    levels = np.round(heatmap * 255).astype(np.uint8)
    scaled = np.asarray(Image.fromarray(levels).resize((width, height), Image.BILINEAR))
    alpha = np.round(scaled.astype(np.float64) * MAX_ALPHA).astype(np.uint8)
    rgba = np.concatenate([COLOURS[scaled], alpha[:, :, None]], axis=2)
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
