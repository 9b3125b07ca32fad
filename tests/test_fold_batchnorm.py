"""Folding BatchNorm into convolutions keeps the model's outputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from training.models.backbones import base_of, build_model
from training.models.fold_batchnorm import FoldError, count_batchnorm, fold_batchnorm, verify_folded


def _randomise_batchnorm(model: keras.Model, seed: int = 0) -> None:
    """Non-trivial statistics, so that a wrong fold shows in the outputs."""
    rng = np.random.default_rng(seed)
    for layer in base_of(model).layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape),
                rng.normal(0, 0.2, beta.shape),
                rng.normal(0, 0.2, mean.shape),
                rng.uniform(0.5, 2.0, variance.shape),
            ])


@pytest.mark.parametrize("backbone", ["tiny", pytest.param("efficientnet_lite0", marks=pytest.mark.slow)])
def test_folded_model_matches_original(backbone):
    keras.utils.set_random_seed(0)  # the same weights in every run
    model = build_model(backbone, 32)
    _randomise_batchnorm(model)
    folded = fold_batchnorm(model)

    assert count_batchnorm(model) > 0
    assert count_batchnorm(folded) == 0
    inputs = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    # The base's feature maps (all that the head pools), before softmax can hide a difference.
    expected = base_of(model)(model.get_layer("normalize")(inputs))
    actual = base_of(folded)(folded.get_layer("normalize")(inputs))
    assert len(expected) == len(actual) >= 2
    for folded_map, original_map in zip(actual, expected, strict=True):
        np.testing.assert_allclose(folded_map.numpy(), original_map.numpy(), rtol=1e-4, atol=1e-5)
    assert verify_folded(model, folded) <= 1e-5


def test_folded_convolutions_carry_rank1_bias():
    folded = fold_batchnorm(build_model("efficientnet_lite0", 32))
    convs = [
        layer for layer in base_of(folded).layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
    ]
    assert convs
    for layer in convs:
        assert layer.use_bias and tuple(layer.bias.shape) == (layer.output.shape[-1],)


def test_verify_folded_refuses_a_different_model():
    model = build_model("tiny", 32)
    other = build_model("tiny", 32)
    kernel, bias = other.get_layer("logits").get_weights()
    other.get_layer("logits").set_weights([np.full_like(kernel, 0.5) * np.array([1, -1], np.float32), bias])
    with pytest.raises(FoldError, match="changed the outputs"):
        verify_folded(model, other)
