import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from aiface.bundle import load_bundle
from training import backbones
from training.augment import augment
from training.data import SkipLog, class_weights, make_dataset
from training.layout import list_split
from training.train import main

from helpers import face_like


def run(tmp_path, data, *extra):
    out = tmp_path / "run"
    argv = [str(data), "--backbone", "tiny", "--image-size", "32", "--batch-size", "8", "--out", str(out), *extra]
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
    assert any("broken_0001.jpg" in name for name in load_bundle(out / "model.keras").metadata.training["skipped_files"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--backbone", "vgg"), "unknown backbone 'vgg'"),
        (("--weights", "/no/such/file.h5"), "does not exist"),
    ],
)
def test_bad_options_fail_with_one_clear_line(tmp_path, tiny_dataset, capsys, extra, message):
    code, _ = run(tmp_path, tiny_dataset, "--epochs", "1", *extra)
    assert code == 2
    assert message in capsys.readouterr().err


def test_empty_folder_fails_clearly(tmp_path, capsys):
    for split in ("train", "valid"):
        for label in ("real", "fake"):
            (tmp_path / "empty" / split / label).mkdir(parents=True)
    code, _ = run(tmp_path, tmp_path / "empty", "--epochs", "1")
    assert code == 2
    assert "holds no images" in capsys.readouterr().err


def test_finetuning_keeps_batchnorm_statistics_fixed(tiny_dataset):
    model = backbones.build_model("tiny", 32)
    backbones.unfreeze_top(model, 1.0)
    model.compile("adam", "sparse_categorical_crossentropy")
    bn = backbones.base_of(model).get_layer("bn0")
    before = [w.copy() for w in bn.get_weights()]
    skips = SkipLog()
    examples = list_split(tiny_dataset, "train")
    model.fit(make_dataset(examples, 32, 8, training=True, skips=skips), epochs=1, verbose=0)
    conv = backbones.base_of(model).get_layer("conv0")
    assert conv.trainable and not bn.trainable
    for old, new in zip(before, bn.get_weights()):
        assert np.array_equal(old, new)


def test_class_weights_balance_the_classes(tiny_dataset):
    examples = list_split(tiny_dataset, "train")[:18]  # 12 real, 6 fake
    weights = class_weights(examples)
    assert weights[0] * 12 == pytest.approx(weights[1] * 6)


def test_augmentation_is_reproducible_and_keeps_type():
    pixels = face_like(1, size=96)
    first = augment(pixels, np.random.default_rng(5))
    second = augment(pixels, np.random.default_rng(5))
    assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3
    assert np.array_equal(first, second)


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
    argv = [str(tiny_dataset), "--backbone", "tiny", "--image-size", "32", "--batch-size", "8",
            "--epochs", "2", "--strategy", "mirrored", "--out", str(out)]
    result = subprocess.run([sys.executable, "-c", MIRRORED, *argv], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 replica(s)" in result.stderr
    assert load_bundle(out / "model.keras").metadata.training["epochs"] == 2


def test_from_scratch_batchnorm_learns_its_statistics(trained):
    # The tiny backbone has no pretrained weights, so the run trained it from scratch.
    bn = backbones.base_of(load_bundle(trained / "model.keras").model).get_layer("bn0")
    moving_mean = bn.get_weights()[2]
    assert np.abs(moving_mean).max() > 1e-3
