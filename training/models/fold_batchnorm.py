"""Fold inference-mode BatchNormalization into the convolution before it.

Why: TensorFlow's graph optimiser folds a BatchNorm that follows a bias-free
convolution into an ``Add`` of a ``[1, 1, 1, C]`` constant, and the TF.js
converter fuses that into ``FusedConv2D`` with a rank-4 bias, which the WASM
backend rejects ("FusedConv2D only supports rank-1 bias"). A model whose
convolutions carry the BatchNorm in their own kernel and rank-1 bias
converts to a plain fused convolution that every backend runs, and is
slightly faster.

The rewrite is generic: it clones any functional model, nested functional
models (such as the base inside our classifiers) included, replacing each
``Conv2D`` / ``DepthwiseConv2D`` whose only consumer is a ``BatchNormalization``
over the channel axis by one with ``use_bias=True`` and the folded weights,
and dropping that BatchNorm. Any other layer is copied with its weights.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

FOLDABLE_CONVS = (layers.Conv2D, layers.DepthwiseConv2D)
# The folded model must reproduce the original to this (absolute) tolerance.
TOLERANCE = 1e-5


class FoldError(RuntimeError):
    """The folded model does not reproduce the original."""


def _single_producer(layer: layers.Layer):
    """The layer whose output is this layer's only input, or None."""
    if len(layer._inbound_nodes) != 1:
        return None
    parents = layer._inbound_nodes[0].parent_nodes
    if len(parents) != 1:
        return None
    return parents[0].operation


def _foldable_pairs(model: keras.Model) -> dict[int, layers.Layer]:
    """id(conv) -> its BatchNorm, and id(bn) -> the BatchNorm, for every foldable pair."""
    pairs: dict[int, layers.Layer] = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            pairs.update(_foldable_pairs(layer))
        if not isinstance(layer, layers.BatchNormalization):
            continue
        conv = _single_producer(layer)
        channel_last = layer.axis in (-1, len(layer.input.shape) - 1)
        if (
            isinstance(conv, FOLDABLE_CONVS)
            and channel_last
            and conv.data_format == "channels_last"
            and conv.activation is keras.activations.linear
            and len(conv._outbound_nodes) == 1
            and len(conv._inbound_nodes) == 1
        ):
            pairs[id(conv)] = layer
            pairs[id(layer)] = layer
    return pairs


def folded_weights(conv: layers.Layer, bn: layers.BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
    """Kernel and rank-1 bias of ``bn(conv(x))`` as one convolution, in float64 then float32."""
    kernel = np.asarray(conv.kernel, dtype=np.float64)
    channels = kernel.shape[2] * kernel.shape[3] if isinstance(conv, layers.DepthwiseConv2D) else kernel.shape[3]
    bias = np.asarray(conv.bias, dtype=np.float64) if conv.use_bias else np.zeros(channels)
    gamma = np.asarray(bn.gamma, dtype=np.float64) if bn.scale else np.ones(channels)
    beta = np.asarray(bn.beta, dtype=np.float64) if bn.center else np.zeros(channels)
    mean = np.asarray(bn.moving_mean, dtype=np.float64)
    variance = np.asarray(bn.moving_variance, dtype=np.float64)
    scale = gamma / np.sqrt(variance + bn.epsilon)
    # Output channel c of a depthwise conv is input channel c // multiplier's
    # filter number c % multiplier: kernel axes 2 and 3 flattened in order.
    kernel = kernel * scale.reshape(kernel.shape[2:] if isinstance(conv, layers.DepthwiseConv2D) else (-1,))
    bias = (bias - mean) * scale + beta
    return kernel.astype(np.float32), bias.astype(np.float32)


def fold_batchnorm(model: keras.Model) -> keras.Model:
    """A copy of ``model`` with every foldable BatchNorm folded into its convolution."""
    pairs = _foldable_pairs(model)
    originals: dict[int, layers.Layer] = {}

    def clone_layer(layer):
        config = layer.get_config()
        if id(layer) in pairs and isinstance(layer, FOLDABLE_CONVS):
            config["use_bias"] = True
        clone = layer.__class__.from_config(config)
        originals[id(clone)] = layer
        return clone

    def call_layer(clone, *args, **kwargs):
        original = originals.get(id(clone))
        if isinstance(original, layers.BatchNormalization) and id(original) in pairs:
            return args[0]
        return clone(*args, **kwargs)

    # recursive=True clones nested functional models itself, so clone_layer
    # only ever sees leaf layers.
    copy = keras.models.clone_model(
        model, clone_function=clone_layer, call_function=call_layer, recursive=True
    )
    for clone in _leaf_layers(copy):
        original = originals[id(clone)]
        if id(original) in pairs:
            clone.set_weights(list(folded_weights(original, pairs[id(original)])))
        else:
            clone.set_weights(original.get_weights())
    return copy


def _leaf_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        elif not isinstance(layer, layers.InputLayer):
            yield layer


def count_batchnorm(model: keras.Model) -> int:
    return sum(
        count_batchnorm(layer) if isinstance(layer, keras.Model) else isinstance(layer, layers.BatchNormalization)
        for layer in model.layers
    )


def verify_folded(original: keras.Model, folded: keras.Model, samples: int = 4, seed: int = 0) -> float:
    """Largest output difference on random inputs; FoldError above TOLERANCE."""
    shape = (samples,) + tuple(original.input_shape[1:])
    inputs = np.random.default_rng(seed).uniform(0.0, 255.0, size=shape).astype(np.float32)
    expected = original.predict(inputs, verbose=0)
    actual = folded.predict(inputs, verbose=0)
    difference = float(np.max(np.abs(expected - actual)))
    if not difference <= TOLERANCE:
        raise FoldError(
            f"folding BatchNorm changed the outputs by up to {difference:.2e} "
            f"(more than {TOLERANCE:.0e})"
        )
    return difference
