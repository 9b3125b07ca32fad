"""A model's final layer fitted anew on its frozen features (training.refit_head, training.features)."""

import json

import numpy as np
import pytest

from helpers import face_like
from training.aligned import main as aligned_main
from training.features import view_transform
from training.refit_head import example_weights, fold_logistic
from training.refit_head import main as refit_main


def test_degraded_view_draws_by_file_name_so_a_pair_is_degraded_alike():
    degraded = view_transform("degraded")
    photo = face_like(1, size=96)
    reconstruction = face_like(2, size=96)
    first = [degraded(photo, f"taef2-x_{index}.jpg") for index in range(8)]
    again = [degraded(photo, f"taef2-x_{index}.jpg") for index in range(8)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    # The other image of a pair gets the same draw: the same size out (laundering shrinks, the rest does not).
    for index, image in enumerate(first):
        assert degraded(reconstruction, f"taef2-x_{index}.jpg").shape == image.shape
    assert not all(image.shape == photo.shape and np.array_equal(image, photo) for image in first)
    with pytest.raises(ValueError, match="unknown view 'sepia'"):
        view_transform("sepia")


def test_folded_layer_gives_the_logistic_regression_logit(tiny_model_path):
    from aiface.bundle import load_bundle
    from training.features import feature_model

    bundle = load_bundle(tiny_model_path)
    size = bundle.metadata.image_size
    images = np.stack([face_like(seed, size=size) for seed in range(4)]).astype(np.float32)
    features = feature_model(bundle.model)(images)
    rng = np.random.default_rng(0)
    coef, mean = rng.normal(size=features.shape[1]), rng.normal(size=features.shape[1])
    scale = rng.uniform(0.5, 2.0, size=features.shape[1])
    fold_logistic(bundle.model, coef, 0.3, mean, scale)
    expected = 1.0 / (1.0 + np.exp(-(((features - mean) / scale) @ coef + 0.3)))
    np.testing.assert_allclose(bundle.model.predict(images, verbose=0)[:, 1], expected, rtol=1e-4, atol=1e-5)


def test_weights_give_each_kind_its_share():
    from training.layout import Example

    examples = [Example(f"{i}", i % 2, "zoya_140k_subset") for i in range(10)]
    examples += [Example(f"a{i}", i % 2, "taef2-x") for i in range(30)]
    examples += [Example(f"o{i}", 1, "other_fakes") for i in range(5)] + [Example("r", 0, "other_reals")]
    weights = example_weights(examples, 0.4, {"taef2-x"}, 0.3)
    assert weights.mean() == pytest.approx(1.0)
    total = weights.sum()
    assert weights[:10].sum() / total == pytest.approx(0.4)
    assert weights[10:40].sum() / total == pytest.approx(0.3)
    assert weights[-1] / total == pytest.approx(0.15)  # the other reals: half of what is left


@pytest.mark.slow  # over 5 s on 2 shared cores
def test_refit_writes_a_calibrated_bundle_and_reuses_its_features(tiny_model_path, tiny_dataset, tmp_path, capsys):
    aligned = tmp_path / "aligned"
    assert aligned_main([str(tiny_dataset), "--out", str(aligned), "--decoder", "ae4_tconv",
                         "--split", "train", "--split", "valid"]) == 0
    out = tmp_path / "refit" / "new.keras"
    before = tiny_model_path.read_bytes()
    command = [str(tiny_model_path), str(tiny_dataset), "--out", str(out), "--aligned", str(aligned),
               "--c", "0.01", "--c", "1", "--version", "9.0.0"]
    assert refit_main(command) == 0
    assert tiny_model_path.read_bytes() == before
    metadata = json.loads(out.with_suffix(".json").read_text())
    fit = metadata["training"]["refit_head"]
    assert metadata["version"] == "9.0.0" and fit["c"] in (0.01, 1.0) and fit["from"]["version"] == "0.0.1"
    assert fit["aligned_train_pairs"] == 12 and fit["train_images"] == 3 * (24 + 24)
    assert 0.0 <= metadata["threshold"] <= 1.0 and metadata["metrics"]["calibration"]["images"] == 12
    cached = sorted((out.parent / "features").glob("*.npy"))
    assert len(cached) == 8  # three views of two train lists, two views of the selection set
    stamps = [path.stat().st_mtime_ns for path in cached]
    capsys.readouterr()
    assert refit_main([*command, "--overwrite"]) == 0
    assert [path.stat().st_mtime_ns for path in cached] == stamps

    assert refit_main(command) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert refit_main([str(tiny_model_path), str(tiny_dataset), "--out", str(tiny_model_path), "--overwrite"]) == 2
    assert "--out is the model itself" in capsys.readouterr().err
