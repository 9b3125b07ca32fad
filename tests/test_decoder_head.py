"""A decoder head fitted on aligned pairs beside a model's own head (training.decoder_head)."""

import json

import numpy as np
import pytest

from helpers import face_like
from training.aligned import main as aligned_main
from training.decoder_head import main as decoder_head_main


@pytest.fixture(scope="module")
def aligned(tiny_dataset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("aligned")
    assert aligned_main([str(tiny_dataset), "--out", str(folder), "--decoder", "ae4_tconv",
                         "--split", "train", "--split", "valid"]) == 0
    return folder


@pytest.mark.slow  # over 5 s on 2 shared cores
def test_two_heads_score_by_the_larger_margin(tiny_model_path):
    from aiface.bundle import load_bundle
    from training.decoder_head import add_heads, generator_margin
    from training.features import feature_model

    bundle = load_bundle(tiny_model_path)
    size = bundle.metadata.image_size
    images = np.stack([face_like(seed, size=size) for seed in range(6)]).astype(np.float32)
    before = bundle.model.predict(images, verbose=0)[:, 1]
    features = feature_model(bundle.model)(images)
    w, b = generator_margin(bundle.model)
    # The generator margin is the model's own logit.
    np.testing.assert_allclose(1 / (1 + np.exp(-(features @ w + b))), before, rtol=1e-4, atol=1e-5)

    rng = np.random.default_rng(0)
    decoder = rng.normal(size=features.shape[1])
    heads = np.stack([w, decoder], axis=1)
    offsets = np.array([b - 0.2, 0.1])
    joined = add_heads(bundle.model, heads, offsets, zero=0.2)
    margins = features @ heads + offsets
    expected = 1 / (1 + np.exp(-(margins.max(axis=1) + 0.2)))
    np.testing.assert_allclose(joined.predict(images, verbose=0)[:, 1], expected, rtol=1e-4, atol=1e-5)
    # Where the generator head decides, the model's own probability comes back unchanged.
    generator_decides = margins.argmax(axis=1) == 0
    np.testing.assert_allclose(expected[generator_decides], before[generator_decides], rtol=1e-4, atol=1e-5)
    # Both heads decide somewhere in this draw, so the test is not passed by one head alone.
    assert set(margins.argmax(axis=1)) == {0, 1}
    # The features are found through the new heads layer too (refits and probes read them so).
    np.testing.assert_allclose(feature_model(joined)(images), features, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # over 5 s on 2 shared cores
def test_fit_writes_a_calibrated_two_head_bundle(tiny_model_path, tiny_dataset, aligned, tmp_path, capsys):
    from aiface.bundle import load_bundle
    from aiface.explain import GradCam

    out = tmp_path / "dh" / "new.keras"
    before = tiny_model_path.read_bytes()
    command = [str(tiny_model_path), str(tiny_dataset), "--aligned", str(aligned), "--out", str(out),
               "--c", "0.01", "--c", "1", "--view", "clean", "--view", "laundered", "--version", "9.1.0"]
    assert decoder_head_main(command) == 0
    assert tiny_model_path.read_bytes() == before
    metadata = json.loads(out.with_suffix(".json").read_text())
    fit = metadata["training"]["decoder_head"]
    assert metadata["version"] == "9.1.0" and fit["from"]["version"] == "0.0.1" and fit["c"] in (0.01, 1.0)
    assert fit["aligned_train_pairs"] == 12 and fit["extra_train_reals"] == 12
    assert fit["heads"] == ["generator", "decoder"] and fit["decoder_spread"] > 0 and fit["head_slope"] == 2.0
    assert 0.0 <= metadata["threshold"] <= 1.0 and metadata["metrics"]["calibration"]["images"] == 12

    bundle = load_bundle(out)
    assert [layer.name for layer in bundle.model.layers][-4:] == ["heads", "largest_head", "logits", "probabilities"]
    image = face_like(3, size=bundle.metadata.image_size).astype(np.float32)
    p = bundle.predict_fake(image[None])
    assert p.shape == (1,) and 0.0 <= p[0] <= 1.0
    # Grad-CAM walks the head layer by layer: it must still explain a two-head model.
    heat = GradCam(bundle.model).heatmap(image, fake=True)
    assert heat.ndim == 2 and np.isfinite(heat).all()

    capsys.readouterr()
    assert decoder_head_main(command) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    again = tmp_path / "again.keras"
    assert decoder_head_main([str(out), str(tiny_dataset), "--aligned", str(aligned), "--out", str(again)]) == 2
    assert "already has a decoder head" in capsys.readouterr().err
    assert not again.exists()
    # Fine-tuning from the two-head bundle starts from the model it was made from: network and generator head.
    from training.calibration import fold_temperature
    from training.train import start_from_trained

    original = load_bundle(tiny_model_path)
    fresh = load_bundle(tiny_model_path).model
    fresh.set_weights([np.zeros_like(w) for w in fresh.get_weights()])
    start_from_trained(fresh, out)
    fold_temperature(fresh, original.metadata.temperature)
    images = np.stack([face_like(seed, size=original.metadata.image_size) for seed in range(4)]).astype(np.float32)
    np.testing.assert_allclose(fresh.predict(images, verbose=0), original.model.predict(images, verbose=0),
                               rtol=1e-4, atol=1e-5)


def test_refit_head_refuses_a_two_head_model(tiny_model_path, tiny_dataset, aligned, tmp_path, capsys):
    from training.refit_head import main as refit_main

    out = tmp_path / "dh.keras"
    assert decoder_head_main([str(tiny_model_path), str(tiny_dataset), "--aligned", str(aligned), "--out",
                              str(out), "--c", "1", "--view", "clean", "--no-reals"]) == 0
    capsys.readouterr()
    assert refit_main([str(out), str(tiny_dataset), "--out", str(tmp_path / "refit.keras")]) == 2
    assert "decoder head" in capsys.readouterr().err


def test_usage_errors_stop_before_tensorflow(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        decoder_head_main(["m.keras", "data", "--aligned", "a", "--out", str(tmp_path / "x.h5")])
    assert stop.value.code == 2 and "--out must end in .keras" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        decoder_head_main(["m.keras", "data", "--aligned", "a", "--out", str(tmp_path / "x.keras"), "--head-fpr", "0"])
    assert stop.value.code == 2 and "--head-fpr must lie strictly between 0 and 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        decoder_head_main(["m.keras", "data", "--aligned", "a", "--out", str(tmp_path / "x.keras"),
                           "--head-slope", "0"])
    assert stop.value.code == 2 and "--head-slope must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        decoder_head_main(["m.keras", "data", "--out", str(tmp_path / "x.keras")])
    assert stop.value.code == 2 and "--aligned" in capsys.readouterr().err
