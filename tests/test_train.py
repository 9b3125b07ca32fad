import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from aiface.bundle import load_bundle
from helpers import face_like
from training.data.augment import AugmentConfig, degrade, random_crop, reframe, zoom_out
from training.data.batches import SkipLog, make_training_dataset, sampling_weights
from training.data.layout import Example, list_split
from training.models import backbones
from training.train import main

# Every test here trains or builds a model.
pytestmark = pytest.mark.slow


def run(tmp_path, data, *extra):
    out = tmp_path / "run"
    argv = [str(data), "--backbone", "tiny", "--image-size", "32", "--crop-size", "24", "--batch-size", "8",
            "--steps-per-epoch", "3", "--out", str(out), *extra]
    return main(argv), out


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_dataset):
    code, out = run(tmp_path_factory.mktemp("trained"), tiny_dataset, "--epochs", "2", "--head-epochs", "1")
    assert code == 0
    return out


def test_training_writes_a_calibrated_model(trained):
    bundle = load_bundle(trained / "model.keras")
    meta = bundle.metadata
    assert meta.backbone == "tiny" and meta.image_size == 32
    assert meta.temperature > 0 and 0.0 <= meta.threshold <= 1.0 and meta.target_fpr == 0.01
    assert meta.training["epochs"] == 2 and meta.training["train_images"] == 24
    p = bundle.predict_fake(np.zeros((2, 32, 32, 3), np.float32))
    assert p.shape == (2,) and np.all((p >= 0) & (p <= 1))
    history = (trained / "history.csv").read_text().strip().splitlines()
    assert len(history) == 3  # header and one row per epoch
    assert json.loads((trained / "state.json").read_text())["epoch"] == 2


def test_resume_continues_where_the_run_stopped(tmp_path, tiny_dataset):
    code, out = run(tmp_path, tiny_dataset, "--epochs", "1", "--head-epochs", "1")
    assert code == 0
    code, _ = run(tmp_path, tiny_dataset, "--epochs", "3", "--resume")
    assert code == 0
    assert json.loads((out / "state.json").read_text())["epoch"] == 3
    epochs = [line.split(",")[0] for line in (out / "history.csv").read_text().splitlines()[1:]]
    assert epochs == ["0", "1", "2"]
    # The model says how it was made: the command that started the run, then the one that resumed it.
    training = load_bundle(out / "model.keras").metadata.training
    assert training["command"].startswith("python -m training.train ") and "--epochs 1" in training["command"]
    assert len(training["resumed_with"]) == 1 and "--resume" in training["resumed_with"][0]


def test_existing_run_is_not_overwritten(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.keras").write_text("precious")
    code, _ = run(tmp_path, tiny_dataset, "--epochs", "1")
    assert code == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "model.keras").read_text() == "precious"


def test_unreadable_files_are_skipped_and_named(tmp_path, tiny_dataset, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    (data / "train" / "fake" / "broken_0001.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code, out = run(tmp_path, data, "--epochs", "1")
    assert code == 0
    assert "broken_0001.jpg" in capsys.readouterr().err
    skipped = load_bundle(out / "model.keras").metadata.training["skipped_files"]
    assert any("broken_0001.jpg" in name for name in skipped)


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--weights", "/no/such/file.h5"), "does not exist"),
    ],
)
def test_bad_options_fail_with_one_clear_line(tmp_path, tiny_dataset, capsys, extra, message):
    code, _ = run(tmp_path, tiny_dataset, "--epochs", "1", *extra)
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--crop-size", "40"), "must not exceed --image-size"),
        (("--degrade-prob", "1.5"), "expected a number in [0, 1]"),
        (("--fair-share", "nan"), "expected a number in [0, 1]"),
        (("--steps-per-epoch", "0"), "expected a positive integer"),
        (("--head", "max"), "invalid choice: 'max'"),
        (("--resume-lr", "1e-5"), "--resume-lr needs --resume"),
        (("--backbone", "vgg"), "invalid choice: 'vgg'"),
    ],
)
def test_bad_settings_are_usage_errors(tmp_path, tiny_dataset, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        run(tmp_path, tiny_dataset, "--epochs", "1", *extra)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_empty_folder_fails_clearly(tmp_path, capsys):
    for split in ("train", "valid"):
        for label in ("real", "fake"):
            (tmp_path / "empty" / split / label).mkdir(parents=True)
    code, _ = run(tmp_path, tmp_path / "empty", "--epochs", "1")
    assert code == 2
    assert "holds no images" in capsys.readouterr().err


def test_finetuning_keeps_batchnorm_statistics_fixed(tiny_dataset):
    model = backbones.build_model("tiny", None)
    backbones.unfreeze_top(model, 1.0)
    model.compile("adam", "sparse_categorical_crossentropy")
    bn = backbones.base_of(model).get_layer("bn0")
    before = [w.copy() for w in bn.get_weights()]
    skips = SkipLog()
    examples = list_split(tiny_dataset, "train")
    data = make_training_dataset(examples, 32, 24, 8, skips=skips, weights=sampling_weights(examples))
    model.fit(data, epochs=1, steps_per_epoch=3, verbose=0)
    conv = backbones.base_of(model).get_layer("conv0")
    assert conv.trainable and not bn.trainable
    for old, new in zip(before, bn.get_weights(), strict=True):
        assert np.array_equal(old, new)


def examples_of(counts: dict[tuple[str, int], int]) -> list[Example]:
    return [
        Example(f"{source}_{label}_{i}.jpg", label, source) for (source, label), n in counts.items() for i in range(n)
    ]


def test_sampling_gives_the_fair_pairs_their_share_with_classes_equal():
    examples = examples_of({
        ("zoya_140k_subset", 0): 500, ("zoya_140k_subset", 1): 550, ("roeishc_ffhq_sg2", 0): 374,
        ("roeishc_ffhq_sg2", 1): 300, ("utk", 0): 3500, ("lfw", 0): 1000, ("hmdghoul", 1): 2800,
    })
    weights = sampling_weights(examples, fair_share=0.5)
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights[("zoya_140k_subset", 0)] == weights[("roeishc_ffhq_sg2", 1)] == pytest.approx(0.125)
    # The other half: a quarter per class, whatever the number of images.
    assert weights[("utk", 0)] == weights[("lfw", 0)] == pytest.approx(0.125)
    assert weights[("hmdghoul", 1)] == pytest.approx(0.25)
    fake = sum(w for (source, label), w in weights.items() if label == 1)
    assert fake == pytest.approx(0.5)


def test_sampling_without_fair_sources_balances_classes_and_sources():
    weights = sampling_weights(examples_of({("a", 0): 10, ("b", 0): 1, ("c", 1): 99}))
    assert weights == {("a", 0): pytest.approx(0.25), ("b", 0): pytest.approx(0.25), ("c", 1): pytest.approx(0.5)}


def test_training_batches_follow_the_sampling_weights(tiny_dataset):
    examples = list_split(tiny_dataset, "train")
    weights = {(source, label): (0.9 if label == 1 else 0.1 / 2) for source, label in
               {(e.source, e.label) for e in examples}}
    total = sum(weights.values())
    weights = {group: w / total for group, w in weights.items()}
    data = make_training_dataset(examples, 32, 24, 50, skips=SkipLog(), weights=weights, seed=3)
    images, labels = next(iter(data))
    assert images.shape == (50, 24, 24, 3)
    assert 0.75 < float(np.mean(labels.numpy())) <= 1.0


def test_degradation_happens_with_its_probability_and_is_reproducible():
    pixels = face_like(1, size=96)
    never = AugmentConfig(degrade_prob=0.0)
    assert all(degrade(pixels, np.random.default_rng(i), never) is pixels for i in range(20))
    always = AugmentConfig(degrade_prob=1.0)
    first = degrade(pixels, np.random.default_rng(5), always)
    assert np.array_equal(first, degrade(pixels, np.random.default_rng(5), always))
    assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3
    changed = sum(not np.array_equal(degrade(pixels, np.random.default_rng(i), always), pixels) for i in range(20))
    assert changed >= 15
    with pytest.raises(ValueError, match="degrade_prob"):
        AugmentConfig(degrade_prob=1.5)


def test_random_crop_moves_pixels_without_resampling():
    model_input = np.arange(32 * 32 * 3, dtype=np.float32).reshape(32, 32, 3)
    for seed in range(10):
        crop = random_crop(model_input, 24, np.random.default_rng(seed))
        assert crop.shape == (24, 24, 3)
        # Every value is one of the input's, in a window of it (flipped or not).
        top, left = np.argwhere(model_input[:, :, 0] == crop[:, :, 0].min())[0]
        window = model_input[top : top + 24, left : left + 24]
        assert np.array_equal(crop, window) or np.array_equal(crop, window[:, ::-1])
    with pytest.raises(ValueError):
        random_crop(model_input, 40, np.random.default_rng(0))


def test_reframing_takes_a_square_window_with_its_probability():
    pixels = face_like(2, size=100)[:, :80]  # 100 high, 80 wide
    assert all(reframe(pixels, np.random.default_rng(i)) is pixels for i in range(10))  # off by default
    always = AugmentConfig(reframe_prob=1.0, min_reframe=0.5)
    sides = set()
    for seed in range(30):
        window = reframe(pixels, np.random.default_rng(seed), always)
        side = window.shape[0]
        assert window.shape == (side, side, 3) and 40 <= side <= 80
        # A window of the image itself, nothing resampled.
        top, left = next((t, lf) for t in range(101 - side) for lf in range(81 - side)
                         if np.array_equal(pixels[t : t + side, lf : lf + side], window))
        assert np.shares_memory(window, pixels) and top >= 0 and left >= 0
        sides.add(side)
    assert len(sides) > 10
    with pytest.raises(ValueError, match="min_reframe"):
        AugmentConfig(min_reframe=1.5)


def test_zooming_out_sets_the_shrunk_image_on_another():
    from aiface.preprocess import resize

    pixels = face_like(3, size=64)
    surround = np.full((40, 50, 3), 7, np.uint8)
    assert zoom_out(pixels, np.random.default_rng(0), surround) is pixels  # off by default
    always = AugmentConfig(zoom_out_prob=1.0, min_zoom_out=0.5)
    for seed in range(10):
        framed = zoom_out(pixels, np.random.default_rng(seed), surround, always)
        assert framed.shape == (64, 64, 3)
        inside = np.argwhere(np.any(framed != 7, axis=2))
        (top, left), (bottom, right) = inside.min(axis=0), inside.max(axis=0) + 1
        side = bottom - top
        assert right - left == side and 32 <= side <= 64
        # The image, shrunk by the shared resize, surrounded by the other image.
        np.testing.assert_array_equal(framed[top:bottom, left:right], resize(pixels, side))
        assert np.sum(np.all(framed == 7, axis=2)) == 64 * 64 - side * side


def test_a_run_can_zoom_out_and_reframe_its_draws_and_calibrate_on_laundered_copies(tmp_path, tiny_dataset):
    code, out = run(tmp_path, tiny_dataset, "--epochs", "1", "--zoom-out-prob", "1", "--reframe-prob", "1",
                    "--calibrate-laundered")
    assert code == 0
    settings = json.loads((out / "state.json").read_text())["settings"]
    assert settings["zoom_out_prob"] == 1.0 and settings["reframe_prob"] == 1.0
    calibration = load_bundle(out / "model.keras").metadata.metrics["calibration"]
    assert calibration["laundered"] is True and calibration["laundered_false_positive_rate"] <= 0.01


def test_selection_keeps_the_best_epoch(trained):
    state = json.loads((trained / "state.json").read_text())
    best = state["best"]
    assert 1 <= best["epoch"] <= 2 and 0.0 <= best["fair_auc"] <= 1.0
    rows = (trained / "history.csv").read_text().strip().splitlines()
    header = rows[0].split(",")
    aucs = [float(row.split(",")[header.index("fair_auc")]) for row in rows[1:]]
    assert best["fair_auc"] == pytest.approx(max(aucs))
    assert load_bundle(trained / "model.keras").metadata.training["best_epoch"] == best


MIRRORED = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from training.train import main
sys.exit(main(sys.argv[1:]))
"""


def test_mirrored_training_on_two_logical_cpus(tmp_path, tiny_dataset):
    out = tmp_path / "mirrored"
    argv = [str(tiny_dataset), "--backbone", "tiny", "--image-size", "32", "--crop-size", "24", "--batch-size", "8",
            "--steps-per-epoch", "3", "--epochs", "2", "--strategy", "mirrored", "--out", str(out)]
    result = subprocess.run([sys.executable, "-c", MIRRORED, *argv], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 replica(s)" in result.stderr
    assert load_bundle(out / "model.keras").metadata.training["epochs"] == 2


def test_from_scratch_batchnorm_learns_its_statistics(trained):
    # The tiny backbone has no pretrained weights, so the run trained it from scratch.
    bn = backbones.base_of(load_bundle(trained / "model.keras").model).get_layer("bn0")
    moving_mean = bn.get_weights()[2]
    assert np.abs(moving_mean).max() > 1e-3


def test_resume_at_a_lower_rate_continues_from_the_best_weights(tmp_path, tiny_dataset, capsys):
    code, out = run(tmp_path, tiny_dataset, "--epochs", "2", "--head-epochs", "1")
    assert code == 0
    best = json.loads((out / "state.json").read_text())["best"]
    code, _ = run(tmp_path, tiny_dataset, "--epochs", "3", "--resume", "--resume-lr", "1e-5", "--patience", "5")
    assert code == 0
    assert f"continuing from the best epoch's weights ({best})" in capsys.readouterr().err
    rows = (out / "history.csv").read_text().strip().splitlines()
    header, last = rows[0].split(","), rows[-1].split(",")
    assert len(rows) == 4 and float(last[header.index("learning_rate")]) == pytest.approx(1e-5)


def test_a_run_can_start_from_a_trained_model(tmp_path, trained, tiny_dataset, capsys):
    from training.models.calibration import fold_temperature
    from training.train import start_from_trained

    trained_bundle = load_bundle(trained / "model.keras")
    settings = trained_bundle.metadata.training["settings"]
    model = backbones.build_model("tiny", None, None, train_batchnorm=True, head=settings["head"])
    start_from_trained(model, trained / "model.keras")
    # The calibration temperature is taken out, so folding it in again gives the trained model back.
    fold_temperature(model, trained_bundle.metadata.temperature)
    images = np.stack([face_like(seed, 32) for seed in range(4)]).astype(np.float32)
    np.testing.assert_allclose(model.predict(images, verbose=0), trained_bundle.model.predict(images, verbose=0),
                               atol=1e-5)

    out = tmp_path / "again"
    code = main([str(tiny_dataset), "--init-from", str(trained / "model.keras"), "--batch-size", "8", "--crop-size",
                 "24", "--steps-per-epoch", "3", "--epochs", "1", "--out", str(out), "--select-laundered",
                 "--launder-prob", "1.0"])
    assert code == 0
    err = capsys.readouterr().err
    assert "as they are and laundered" in err
    assert re.search(r"epoch 1: fair-pair valid ROC AUC [\d.]+ \(as they are [\d.]+, laundered [\d.]+\)", err)
    state = json.loads((out / "state.json").read_text())
    assert state["settings"]["init_from"] == str(trained / "model.keras")
    assert state["settings"]["image_size"] == 32 and state["settings"]["backbone"] == "tiny"
    assert state["settings"]["init_from_model"] == f"{trained_bundle.metadata.name} {trained_bundle.metadata.version}"
    assert load_bundle(out / "model.keras").metadata.image_size == 32


def test_init_from_a_missing_model_is_a_usage_error(tmp_path, tiny_dataset, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tiny_dataset), "--init-from", str(tmp_path / "none.keras"), "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    assert "--init-from: model metadata" in capsys.readouterr().err


def test_weight_average_is_the_running_mean_and_survives_a_resume(tmp_path):
    from training.train import WeightAverage

    path = tmp_path / "average.npz"
    average = WeightAverage(path, start=2)
    epochs = {epoch: [np.full((2, 2), epoch, np.float32), np.array([10.0 * epoch], np.float32)]
              for epoch in range(1, 5)}
    assert not average.add(1, epochs[1])  # before the start
    assert average.add(2, epochs[2]) and average.add(3, epochs[3])
    resumed = WeightAverage(path, start=2)
    # The epoch redone after an interruption is not counted twice.
    assert not resumed.add(3, epochs[3]) and resumed.add(4, epochs[4])
    mean = resumed.weights_like(epochs[4])
    assert resumed.count == 3 and mean[0].dtype == np.float32
    np.testing.assert_allclose(mean[0], np.full((2, 2), 3.0))
    np.testing.assert_allclose(mean[1], [30.0])


def test_a_run_with_weight_averaging_selects_the_better_of_epoch_and_mean(tmp_path, tiny_dataset, capsys):
    code, out = run(tmp_path, tiny_dataset, "--epochs", "3", "--head-epochs", "1", "--average-from", "2",
                    "--patience", "5")
    assert code == 0
    err = capsys.readouterr().err
    assert "epoch 2: fair-pair valid ROC AUC" in err and "mean of 1 epochs' weights" in err
    assert "epoch 3: " in err and "mean of 2 epochs' weights" in err
    rows = (out / "history.csv").read_text().strip().splitlines()
    header = rows[0].split(",")
    raw = [float(row.split(",")[header.index("fair_auc")]) for row in rows[1:]]
    averaged = [float(row.split(",")[header.index("fair_auc_averaged")]) for row in rows[2:]]
    best = json.loads((out / "state.json").read_text())["best"]
    assert best["fair_auc"] == pytest.approx(max(raw + averaged))
    assert ("averaged_epochs" in best) == (best["fair_auc"] > max(raw))
