"""The second-order pooling layers compute what they claim, at any map size."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from aiface.layers import CovariancePooling, MeanStdPooling
from training.models.backbones import build_model


def test_covariance_pooling_is_the_normalised_upper_triangle_of_the_channel_covariance():
    maps = np.random.default_rng(0).normal(size=(2, 5, 7, 4)).astype(np.float32)
    pooled = CovariancePooling()(maps).numpy()
    assert pooled.shape == (2, 4 * 5 // 2)
    for index in range(2):
        flat = maps[index].reshape(-1, 4).astype(np.float64)
        covariance = np.cov(flat, rowvar=False, bias=True)
        upper = covariance[np.triu_indices(4)]
        rooted = np.sign(upper) * np.sqrt(np.abs(upper) + 1e-6)
        expected = rooted / np.sqrt(np.mean(rooted**2))
        np.testing.assert_allclose(pooled[index], expected, rtol=1e-4, atol=1e-5)
        assert np.mean(pooled[index] ** 2) == pytest.approx(1.0, rel=1e-4)


def test_mean_std_pooling():
    maps = np.random.default_rng(1).uniform(0, 6, size=(3, 4, 4, 5)).astype(np.float32)
    pooled = MeanStdPooling()(maps).numpy()
    np.testing.assert_allclose(pooled[:, :5], maps.mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(pooled[:, 5:], maps.std(axis=(1, 2)), rtol=1e-4)


def test_pooled_features_do_not_depend_on_the_map_size_of_a_uniform_texture():
    # A periodic texture has the same statistics at any size: crops and full frames compare.
    tile = np.random.default_rng(2).normal(size=(4, 4, 3)).astype(np.float32)
    small, large = np.tile(tile, (2, 2, 1))[None], np.tile(tile, (6, 6, 1))[None]
    for layer in (CovariancePooling(), MeanStdPooling()):
        np.testing.assert_allclose(layer(small).numpy(), layer(large).numpy(), rtol=1e-4, atol=1e-5)


def test_a_model_of_any_size_and_its_fixed_size_copy_agree():
    keras.utils.set_random_seed(0)
    anywhere = build_model("tiny", None)
    fixed = build_model("tiny", 32)
    fixed.set_weights(anywhere.get_weights())
    images = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(anywhere.predict_on_batch(images), fixed.predict_on_batch(images), atol=1e-6)
    # and the size-agnostic one also scores crops
    assert anywhere.predict_on_batch(images[:, :24, :24]).shape == (2, 2)


def test_a_saved_second_order_model_loads_with_the_same_outputs(tmp_path):
    keras.utils.set_random_seed(1)
    model = build_model("tiny", 32)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    images = np.random.default_rng(4).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict_on_batch(images), model.predict_on_batch(images), atol=1e-6)
