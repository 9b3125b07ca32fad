"""`python -m training.evaluate` end to end on a tiny model and a tiny data set."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from helpers import TINY_SIZE, encode, face_like
from training.data.launder import downscale, jpeg_recompress, launder
from training.evaluate import main


@pytest.fixture(scope="module")
def data_with_140k(tiny_dataset, tmp_path_factory):
    """The tiny data set plus a few 140k-sample images of both classes and one corrupt file."""
    root = tmp_path_factory.mktemp("data140k") / "data"
    shutil.copytree(tiny_dataset, root)
    for index, label in enumerate(("real", "fake", "real", "fake")):
        pixels = face_like(100 + index, fake=label == "fake")
        (root / "test" / label / f"zoya_140k_subset_{index:04x}.png").write_bytes(encode(pixels))
    (root / "test" / "real" / "synth_a_broken.png").write_bytes(encode(face_like(200))[:60])
    return root


@pytest.fixture(scope="module")
def report_dir(tiny_model_path, data_with_140k, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports") / "report"
    argv = [str(tiny_model_path), str(data_with_140k), "--split", "test", "--out", str(out), "--batch-size", "5"]
    assert main(argv) == 0
    return out


@pytest.mark.slow  # over 5 s on 2 shared cores
def test_report_files_and_contents(report_dir, tiny_model_path, data_with_140k):
    from sklearn.metrics import log_loss

    from aiface.bundle import load_bundle
    from aiface.preprocess import load_image, to_model_input
    from training.data.layout import list_split

    assert {path.name for path in report_dir.iterdir()} == {"report.json", "report.md", "roc.png", "reliability.png"}
    report = json.loads((report_dir / "report.json").read_text())
    overall = report["overall"]
    assert overall["images"] == 16 and overall["real"] == 8 and overall["fake"] == 8
    # The figures are the model's own outputs on the readable test images, scored here without
    # training.evaluation.scoring.
    readable = [e for e in list_split(data_with_140k, "test") if e.path.name != "synth_a_broken.png"]
    inputs = np.stack([to_model_input(load_image(e.path).pixels, TINY_SIZE) for e in readable])
    p_fake = load_bundle(tiny_model_path).model.predict(inputs, verbose=0)[:, 1].astype(np.float64)
    labels = [e.label for e in readable]
    assert overall["mean_p_fake"] == pytest.approx(p_fake.mean(), rel=1e-5)
    assert overall["log_loss"] == pytest.approx(log_loss(labels, p_fake), rel=1e-5)
    for key in ("accuracy", "balanced_accuracy", "roc_auc", "average_precision", "ece"):
        assert 0.0 <= overall[key] <= 1.0
    assert sum(overall["confusion"].values()) == 16
    # No threshold does better than the best one chosen on these images.
    assert overall["accuracy"] <= overall["best_accuracy"] <= 1.0
    assert overall["recall_fake_at_1pct_fpr"] <= overall["recall_fake_at_3pct_fpr"]
    assert overall["threshold"] == report["model"]["threshold"] == 0.5
    assert set(report["per_source"]) == {"synth_a", "synth_b", "zoya_140k_subset"}
    assert report["per_source"]["synth_a"]["images"] == 6  # its corrupt seventh file is skipped
    assert report["subset_140k"]["images"] == 4 and report["subset_140k"]["roc_auc"] is not None
    assert report["other_sources"]["images"] == 12
    assert [item["path"].endswith("synth_a_broken.png") for item in report["data"]["skipped"]] == [True]
    assert set(report["robustness"]) == {
        "jpeg_90", "jpeg_70", "jpeg_50", "jpeg_30", "downscale_128", "downscale_64", "laundered", "blur", "down_up",
    }
    assert all(entry["images"] == 16 for entry in report["robustness"].values())
    assert sum(entry["count"] for entry in report["reliability_bins"]) == 16
    text = (report_dir / "report.md").read_text()
    assert "zoya_140k_subset" in text and "JPEG quality 30" in text and "synth_a_broken.png" in text
    assert "## Ceilings" in text and "| 140k sample (`zoya_140k_subset`) |" in text.split("## Ceilings")[1]
    assert (report_dir / "roc.png").read_bytes()[:4] == b"\x89PNG"


def test_refuses_to_overwrite_a_report(report_dir, tiny_model_path, data_with_140k, capsys):
    before = (report_dir / "report.json").read_text()
    args = [str(tiny_model_path), str(data_with_140k), "--out", str(report_dir), "--no-sweep"]
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (report_dir / "report.json").read_text() == before
    assert main([*args, "--overwrite", "--launder", "fake"]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    assert report["data"]["launder"] == "fake" and report["robustness"] is None


def test_missing_model_is_one_clear_line(tmp_path, data_with_140k, capsys):
    assert main([str(tmp_path / "nope.keras"), str(data_with_140k), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model file") and "does not exist" in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_empty_folder_is_one_clear_line(tmp_path, tiny_model_path, capsys):
    (tmp_path / "empty" / "test" / "real").mkdir(parents=True)
    (tmp_path / "empty" / "test" / "fake").mkdir(parents=True)
    assert main([str(tiny_model_path), str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "holds no images" in err and "\n" not in err


@pytest.mark.slow
def test_a_tiny_model_trained_on_the_tiny_data_set_learns_its_pattern(tiny_dataset, tmp_path):
    """Fakes carry a bright checker pattern: a few epochs of the training CLI must learn to tell them."""
    from training.train import main as train

    run = tmp_path / "run"
    argv = [str(tiny_dataset), "--out", str(run), "--backbone", "tiny", "--image-size", "32", "--crop-size", "24",
            "--epochs", "4", "--steps-per-epoch", "10", "--batch-size", "8", "--seed", "0"]
    assert train(argv) == 0
    assert main([str(run / "model.keras"), str(tiny_dataset), "--out", str(tmp_path / "report"), "--no-sweep"]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["model"]["name"] == "run"  # named after its run folder
    overall = report["overall"]  # 12 held-out test images, never seen in training
    assert overall["roc_auc"] >= 0.95 and overall["accuracy"] >= 0.9, overall


@pytest.mark.process
def test_command_line_exit_status(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "training.evaluate", str(tmp_path / "m.keras"), str(tmp_path), "--out",
         str(tmp_path / "r")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


def test_laundering_transforms():
    pixels = face_like(3, size=256, fake=True)
    assert downscale(pixels, 128).shape == (128, 128, 3)
    assert downscale(pixels[:, :200], 64).shape == (64, 50, 3)
    assert downscale(pixels, 512) is pixels
    laundered = launder(pixels)
    assert laundered.shape == (128, 128, 3) and laundered.dtype == np.uint8
    # Low quality loses more of the checker pattern than high quality.
    error_90 = np.abs(jpeg_recompress(pixels, 90).astype(int) - pixels).mean()
    error_30 = np.abs(jpeg_recompress(pixels, 30).astype(int) - pixels).mean()
    assert 0 < error_90 < error_30
    with pytest.raises(ValueError, match="quality"):
        jpeg_recompress(pixels, 0)


def test_the_report_says_whether_faces_or_whole_images_were_scored(tiny_model_path, tmp_path):
    from helpers import scene

    data = tmp_path / "data"
    for label, pixels in (("real", scene()), ("fake", face_like(7, fake=True))):
        (data / "test" / label).mkdir(parents=True)
        (data / "test" / label / f"synth_a_{label}.png").write_bytes(encode(pixels))
    reports = {}
    for name, extra in (("faces", []), ("whole", ["--whole-image"])):
        out = tmp_path / name
        assert main([str(tiny_model_path), str(data), "--out", str(out), "--no-sweep", *extra]) == 0
        reports[name] = (json.loads((out / "report.json").read_text()), (out / "report.md").read_text())
    faces, whole = reports["faces"][0]["data"], reports["whole"][0]["data"]
    assert (faces["scoring"], faces["scored_on_faces"]) == ("faces", 1)
    assert (whole["scoring"], whole["scored_on_faces"]) == ("whole_image", 0)
    assert "the faces found, as the service scores them (1 of the images on a face" in reports["faces"][1]
    assert "- scored: each whole image" in reports["whole"][1]
