"""Temperature scaling, threshold choice and folding T into a model."""

import keras
import numpy as np
import pytest

from aiface.bundle import Bundle, Metadata
from helpers import TINY_SIZE, encode, face_like
from training.data.launder import launder
from training.data.layout import Example
from training.evaluation import metrics
from training.evaluation.scoring import score_examples
from training.models.backbones import build_model
from training.models.calibration import (
    calibrate,
    fit_temperature,
    fit_temperature_to_logits,
    fold_temperature,
    pick_source_threshold,
    pick_threshold,
    sigmoid,
)


def synthetic(true_temperature: float, count: int = 20000, seed: int = 0):
    """Labels drawn from sigmoid(z / T): T is the temperature that calibrates z."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 4.0, count)
    labels = (rng.random(count) < sigmoid(logits / true_temperature)).astype(np.int64)
    return logits, labels


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_temperature_recovers_the_one_that_made_the_labels(true_temperature):
    logits, labels = synthetic(true_temperature)
    fitted = fit_temperature_to_logits(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.08)
    calibrated = sigmoid(logits / fitted)
    assert metrics.expected_calibration_error(labels, calibrated) < 0.02
    assert metrics.log_loss(labels, calibrated) <= metrics.log_loss(labels, sigmoid(logits / true_temperature)) + 1e-9


def test_temperature_from_probabilities_matches_logits():
    logits, labels = synthetic(2.0, count=5000)
    fitted = fit_temperature(sigmoid(logits), labels)
    assert fitted == pytest.approx(2.0, rel=0.1)
    assert fitted == pytest.approx(fit_temperature_to_logits(logits, labels), rel=1e-3)


def test_perfectly_separated_scores_drive_the_temperature_to_its_lower_bound():
    # Every fake above every real: the sharper the better, down to the searched range's end (T = 0.01).
    assert fit_temperature_to_logits(np.array([-3.0, -1.0, 2.0, 5.0]), np.array([0, 0, 1, 1])) == pytest.approx(
        0.01, rel=1e-3
    )


def test_temperature_of_uninformative_scores_is_one():
    assert fit_temperature(np.full(10, 0.5), np.array([0, 1] * 5)) == 1.0


def test_threshold_keeps_false_positives_within_the_target():
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(1000, dtype=int), np.ones(1000, dtype=int)]
    p_fake = np.r_[rng.beta(2, 5, 1000), rng.beta(5, 2, 1000)]
    for target in (0.0, 0.01, 0.05, 0.2):
        threshold = pick_threshold(p_fake, labels, target)
        called_fake = p_fake[labels == 0] >= threshold
        assert called_fake.mean() <= target
        # The lowest such threshold: one more real above it would break the target.
        reals_below = np.sort(p_fake[labels == 0][~called_fake])
        assert (called_fake.sum() + 1) / 1000 > target
        assert threshold > reals_below[-1]


def test_per_source_limit_raises_the_threshold_for_the_worst_source():
    # 20 reals of source "a" scored low, 10 of "b" with two high scores, 10 fakes.
    p_fake = np.array([0.05] * 20 + [0.1] * 8 + [0.7, 0.8] + [0.9] * 10)
    labels = np.array([0] * 30 + [1] * 10)
    sources = np.array(["a"] * 20 + ["b"] * 10 + ["f"] * 10)
    overall = pick_source_threshold(p_fake, labels, sources, 0.1, None)
    assert overall == pytest.approx((0.1 + 0.7) / 2)  # 3 allowed of 30: both of b's high reals pass as fake
    limited = pick_source_threshold(p_fake, labels, sources, 0.1, 0.1)
    # 1 allowed of b's 10: the threshold rises above 0.7, halfway to b's next score.
    assert limited == pytest.approx((0.7 + 0.8) / 2)
    assert np.mean(p_fake[(sources == "b")] >= limited) <= 0.1 and np.all(p_fake[labels == 1] >= limited)


def test_threshold_by_hand():
    labels = np.array([0, 0, 0, 0, 1, 1])
    p_fake = np.array([0.1, 0.2, 0.3, 0.9, 0.5, 0.95])
    # 25 % allowed: the real at 0.9 may be called fake; the next real (0.3) may not.
    assert pick_threshold(p_fake, labels, 0.25) == pytest.approx((0.3 + 0.5) / 2)
    # None allowed: above the highest real, halfway to the fake at 0.95.
    assert pick_threshold(p_fake, labels, 0.0) == pytest.approx((0.9 + 0.95) / 2)
    assert pick_threshold(p_fake, labels, 1.0) == 0.0
    with pytest.raises(ValueError, match="real images"):
        pick_threshold([0.5], [1], 0.01)


def _tiny_model_with_spread():
    keras.utils.set_random_seed(0)
    model = build_model("tiny", TINY_SIZE)
    # Bigger final weights give the untrained model a spread of probabilities to calibrate.
    layer = model.get_layer("logits")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * 20, bias + np.array([0.3, -0.3], dtype=bias.dtype)])
    return model


def test_folding_equals_applying_the_temperature():
    model = _tiny_model_with_spread()
    images = np.stack([face_like(seed, size=TINY_SIZE, fake=seed % 2 == 1) for seed in range(16)]).astype(np.float32)
    before = model.predict_on_batch(images).astype(np.float64)
    logits = np.log(before[:, 1]) - np.log(before[:, 0])
    fold_temperature(model, 3.0)
    after = model.predict_on_batch(images)[:, 1]
    np.testing.assert_allclose(after, sigmoid(logits / 3.0), atol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        fold_temperature(model, 0.0)


def _synthetic_examples(folder, count: int = 24) -> list[Example]:
    examples = []
    for seed in range(count):
        fake = seed % 2 == 1
        path = folder / f"synth_{seed}.png"
        path.write_bytes(encode(face_like(seed, fake=fake)))
        examples.append(Example(path, int(fake), "synth"))
    return examples


def test_calibrate_folds_and_records_in_metadata(tmp_path):
    examples = _synthetic_examples(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    examples.append(Example(tmp_path / "broken.png", 0, "synth"))
    bundle = Bundle(_tiny_model_with_spread(), Metadata(backbone="tiny", image_size=TINY_SIZE, temperature=2.0))
    before = score_examples(bundle, examples, batch_size=8)

    result = calibrate(bundle, examples, target_fpr=0.1, batch_size=8, progress=None)

    meta = bundle.metadata
    assert meta.temperature == pytest.approx(2.0 * result.temperature)
    assert meta.threshold == result.threshold and meta.target_fpr == 0.1
    summary = meta.metrics["calibration"]
    assert summary["images"] == 24 and summary["skipped"] == 1
    assert summary["log_loss_after"] <= summary["log_loss_before"] + 1e-9
    assert summary["false_positive_rate"] <= 0.1
    # The folded model now gives the calibrated probabilities, and the threshold holds for them.
    after = score_examples(bundle, examples, batch_size=8)
    # The network computes in float32: logits of tens carry errors of a few 1e-6 in P(fake).
    np.testing.assert_allclose(after.p_fake, sigmoid(before.logits / result.temperature), atol=1e-5)
    assert (after.p_fake[after.labels == 0] >= meta.threshold).mean() <= 0.1
    assert summary["laundered"] is False and "laundered_false_positive_rate" not in summary


def test_calibrating_on_laundered_copies_holds_the_limit_for_them_too(tmp_path):
    examples = _synthetic_examples(tmp_path, count=40)
    clean, both = (Bundle(_tiny_model_with_spread(), Metadata(backbone="tiny", image_size=TINY_SIZE))
                   for _ in range(2))

    on_clean = calibrate(clean, examples, target_fpr=0.05, batch_size=8, progress=None)
    on_both = calibrate(both, examples, target_fpr=0.05, batch_size=8, progress=None, laundered=True)

    # The same network and the same clean images: the same temperature, and a threshold at least as strict.
    assert on_both.temperature == pytest.approx(on_clean.temperature, rel=1e-6)
    assert on_both.threshold >= on_clean.threshold
    summary = both.metadata.metrics["calibration"]
    assert summary["laundered"] is True
    assert summary["false_positive_rate"] <= 0.05 and summary["laundered_false_positive_rate"] <= 0.05
    washed = score_examples(both, examples, transform=launder, batch_size=8)
    called = washed.p_fake[washed.labels == 0] >= both.metadata.threshold
    assert summary["laundered_false_positive_rate"] == pytest.approx(called.mean())
    assert summary["laundered_source_false_positive_rates"] == {"synth": pytest.approx(called.mean())}


def test_recalibrate_writes_a_new_bundle_and_never_the_given_one(tiny_model_path, tiny_dataset, tmp_path, capsys):
    from aiface.bundle import load_bundle
    from training.recalibrate import main

    original = tiny_model_path.read_bytes()
    out = tmp_path / "new.keras"
    assert main([str(tiny_model_path), str(tiny_dataset), "--out", str(out), "--target-fpr", "0.2"]) == 0
    meta = load_bundle(out).metadata
    assert meta.target_fpr == 0.2 and meta.metrics["calibration"]["max_source_fpr"] == 0.03
    assert meta.metrics["calibration"]["false_positive_rate"] <= 0.2
    assert tiny_model_path.read_bytes() == original
    assert main([str(tiny_model_path), str(tiny_dataset), "--out", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([str(tiny_model_path), str(tiny_dataset), "--out", str(tiny_model_path), "--overwrite"]) == 2
    assert "the model itself" in capsys.readouterr().err
    assert main([str(tiny_model_path), str(tiny_dataset), "--out", str(out), "--overwrite",
                 "--calibrate-laundered"]) == 0
    assert "; laundered, " in capsys.readouterr().err
    calibration = load_bundle(out).metadata.metrics["calibration"]
    assert calibration["laundered"] is True and calibration["laundered_false_positive_rate"] <= 0.01
