"""A head beside a trained model's own, fitted on frozen features (training.add_head, training.models.features)."""

import json

import numpy as np
import pytest

from helpers import face_like
from training.add_head import main as add_head_main
from training.aligned import main as aligned_main
from training.models.features import view_transform


@pytest.fixture(scope="module")
def aligned(tiny_dataset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("aligned")
    assert aligned_main([str(tiny_dataset), "--out", str(folder), "--decoder", "ae4_tconv",
                         "--split", "train", "--split", "valid"]) == 0
    return folder


def _images(size, count=6):
    return np.stack([face_like(seed, size=size) for seed in range(count)]).astype(np.float32)


def test_heads_score_by_the_larger_margin_and_stack(tiny_model_path):
    from aiface.bundle import load_bundle
    from training.add_head import add_heads, margins_of
    from training.models.features import feature_model

    bundle = load_bundle(tiny_model_path)
    images = _images(bundle.metadata.image_size)
    before = bundle.model.predict(images, verbose=0)[:, 1]
    features = feature_model(bundle.model)(images)
    w, b = margins_of(bundle.model)
    assert w.shape == (features.shape[1], 1)
    # The one column is the model's own logit.
    np.testing.assert_allclose(1 / (1 + np.exp(-(features @ w + b)[:, 0])), before, rtol=1e-4, atol=1e-5)

    rng = np.random.default_rng(0)
    heads = np.concatenate([w, rng.normal(size=(features.shape[1], 1))], axis=1)
    offsets = np.array([b[0] - 0.2, 0.1])
    joined = add_heads(bundle.model, heads, offsets, zero=0.2)
    margins = features @ heads + offsets
    expected = 1 / (1 + np.exp(-(margins.max(axis=1) + 0.2)))
    np.testing.assert_allclose(joined.predict(images, verbose=0)[:, 1], expected, rtol=1e-4, atol=1e-5)
    # Where the model's own head decides, its probability comes back unchanged.
    own = margins.argmax(axis=1) == 0
    np.testing.assert_allclose(expected[own], before[own], rtol=1e-4, atol=1e-5)
    assert set(margins.argmax(axis=1)) == {0, 1}  # both heads decide somewhere in this draw
    # The features are found through the heads layer too, and a model with heads reads as its columns.
    np.testing.assert_allclose(feature_model(joined)(images), features, rtol=1e-5, atol=1e-6)
    w2, b2 = margins_of(joined)
    np.testing.assert_allclose(1 / (1 + np.exp(-(features @ w2 + b2).max(axis=1))), expected, rtol=1e-4, atol=1e-5)


def test_every_source_weighs_alike_within_its_class():
    from training.add_head import weights_by_source

    sources = ["utk"] * 6 + ["modern"] * 2 + ["sd"] * 3 + ["flux"]
    labels = np.array([0] * 8 + [1] * 4)
    weights = weights_by_source(sources, labels)
    assert weights[:6].sum() == pytest.approx(weights[6:8].sum())
    assert weights[8:11].sum() == pytest.approx(weights[11])
    assert weights[:8].sum() == pytest.approx(weights[8:].sum()) and weights.sum() == pytest.approx(len(labels))


def test_the_head_threshold_holds_overall_and_per_source():
    from training.add_head import threshold_of

    margins = np.concatenate([np.linspace(-5, 0, 100), np.linspace(-1, 3, 10)])
    sources = ["many"] * 100 + ["few"] * 10
    zero = threshold_of(margins, sources, fpr=0.05, max_source_fpr=0.1)
    calls = margins > zero
    assert calls.mean() <= 0.05 and calls[100:].mean() <= 0.1
    # The per-source limit is what binds here: the overall one alone would accuse the small source more.
    assert np.mean(margins[100:] > np.quantile(margins, 0.95)) > 0.1


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


@pytest.mark.slow
def test_heads_are_added_calibrated_on_faces_and_removed_again(tiny_model_path, tiny_dataset, aligned, tmp_path,
                                                               capsys):
    from aiface.bundle import load_bundle
    from aiface.explain import GradCam
    from training.models.calibration import fold_temperature
    from training.train import start_from_trained

    first = tmp_path / "sources" / "new.keras"
    before = tiny_model_path.read_bytes()
    command = [str(tiny_model_path), str(tiny_dataset), "--head", "synthetic", "--fake-source", "synth_a",
               "--out", str(first), "--c", "0.01", "--c", "1", "--view", "clean", "--view", "laundered",
               "--version", "9.1.0"]
    assert add_head_main(command) == 0
    assert tiny_model_path.read_bytes() == before
    metadata = json.loads(first.with_suffix(".json").read_text())
    fit = metadata["training"]["add_head"]
    assert metadata["version"] == "9.1.0" and fit["from"]["version"] == "0.0.1" and fit["c"] in (0.01, 1.0)
    # Every real of train (12) and the named source's fakes (6), faces found; calibrated on faces found too.
    assert fit["train_images"] == 18 and fit["heads"] == ["generator", "synthetic"] and fit["scored"] == "faces"
    assert metadata["metrics"]["calibration"]["images"] == 12
    assert metadata["metrics"]["calibration"]["scored"] == "faces"
    cached = sorted((first.parent / "features").glob("*.npy"))
    assert len(cached) == 4  # two views of train, two of valid's selection (its reals set the threshold)

    # A third head on top, learnt from aligned pairs (aiface 3.0.0's decoder head is this).
    second = tmp_path / "pairs" / "new.keras"
    assert add_head_main([str(first), str(tiny_dataset), "--head", "decoder", "--aligned", str(aligned),
                          "--out", str(second), "--c", "1", "--view", "clean"]) == 0
    bundle = load_bundle(second)
    assert bundle.metadata.training["add_head"]["heads"] == ["generator", "synthetic", "decoder"]
    assert bundle.model.get_layer("heads").get_weights()[0].shape[1] == 3
    image = face_like(3, size=bundle.metadata.image_size).astype(np.float32)
    assert 0.0 <= bundle.predict_fake(image[None])[0] <= 1.0
    # Grad-CAM walks the head layer by layer: it must still explain a model with heads.
    heat = GradCam(bundle.model).heatmap(image, fake=True)
    assert heat.ndim == 2 and np.isfinite(heat).all()

    # Fine-tuning from it starts from the model it was first made from: the network and the generator head.
    original = load_bundle(tiny_model_path)
    fresh = load_bundle(tiny_model_path).model
    fresh.set_weights([np.zeros_like(w) for w in fresh.get_weights()])
    start_from_trained(fresh, second)
    fold_temperature(fresh, original.metadata.temperature)
    images = _images(original.metadata.image_size, 4)
    np.testing.assert_allclose(fresh.predict(images, verbose=0), original.model.predict(images, verbose=0),
                               rtol=1e-4, atol=1e-5)

    capsys.readouterr()
    assert add_head_main(command) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert add_head_main([*command[:-2], "--out", str(tiny_model_path), "--overwrite"]) == 2
    assert "--out is the model itself" in capsys.readouterr().err
    assert add_head_main([str(tiny_model_path), str(tiny_dataset), "--head", "x", "--fake-source", "nobody",
                          "--out", str(tmp_path / "n.keras")]) == 2
    assert "no fake train images of nobody" in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "message"), [
    (["--aligned", "a", "--out", "x.h5"], "--out must end in .keras"),
    (["--aligned", "a", "--head-fpr", "0"], "--head-fpr and --head-max-source-fpr must lie strictly"),
    (["--aligned", "a", "--head-slope", "0"], "--head-slope must be positive"),
    (["--aligned", "a", "--c", "0"], "every --c must be positive"),
    ([], "name the fakes the head learns"),
])
def test_usage_errors_stop_before_tensorflow(tmp_path, capsys, extra, message):
    out = ["--out", str(tmp_path / "x.keras")] if "--out" not in extra else []
    with pytest.raises(SystemExit) as stop:
        add_head_main(["m.keras", "data", "--head", "diffusion", *out, *extra])
    assert stop.value.code == 2 and message in capsys.readouterr().err
