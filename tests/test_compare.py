"""`python -m training.compare`: two models side by side, four passes each."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import encode, face_like
from training.compare import figures, main
from training.data.layout import Example
from training.evaluation.scoring import Scores


@pytest.fixture(scope="module")
def data_with_fair_pairs(tiny_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("fair") / "data"
    shutil.copytree(tiny_dataset, root)
    for index, label in enumerate(("real", "fake") * 3):
        source = "zoya_140k_subset" if index < 4 else "roeishc_ffhq_sg2"
        pixels = face_like(300 + index, fake=label == "fake")
        (root / "test" / label / f"{source}_{index:04x}.png").write_bytes(encode(pixels))
    return root


@pytest.mark.slow  # over 5 s on 2 shared cores
def test_two_models_side_by_side(tiny_model_path, data_with_fair_pairs, tmp_path):
    out = tmp_path / "cmp"
    argv = [str(tiny_model_path), str(tiny_model_path), "--data", str(data_with_fair_pairs), "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "compare.json").read_text())
    assert len(report["models"]) == 2  # one column each, even with one name and version
    model = next(iter(report["models"].values()))
    assert model["images"] == 18
    assert set(model["per_source"]) == {"synth_a", "synth_b", "zoya_140k_subset", "roeishc_ffhq_sg2"}
    table = (out / "compare.md").read_text()
    assert "| `zoya_140k_subset` ROC AUC |" in table and "| `roeishc_ffhq_sg2` ROC AUC |" in table
    assert "audit: only fakes laundered" in table
    assert "| `zoya_140k_subset` ceiling: best accuracy at any threshold |" in table
    assert table.count("| figure | tiny-test 0.0.1 | tiny-test 0.0.1 (") == 1
    assert report["scoring"] == "faces" and "Scored: the faces found, as the service scores them." in table


def _scores(p_fake, labels, sources):
    examples = [
        Example(Path(f"{i}.png"), label, source) for i, (label, source) in enumerate(zip(labels, sources, strict=True))
    ]
    return Scores(examples, np.asarray(p_fake, float), np.zeros(len(labels)))


def test_audit_and_per_source_false_positives_by_hand():
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    sources = ["a", "a", "b", "b", "f", "f", "f", "f"]
    plain = _scores([0.1, 0.1, 0.1, 0.6, 0.9, 0.9, 0.9, 0.9], labels, sources)
    # Laundering the fakes hides two of the four; laundering the reals changes nothing.
    fakes = _scores([0.1, 0.1, 0.1, 0.6, 0.9, 0.9, 0.2, 0.2], labels, sources)
    result = figures({"none": plain, "both": fakes, "fake": fakes, "real": plain}, threshold=0.5)
    assert result["all"]["accuracy"] == pytest.approx(7 / 8)
    assert result["audit"]["fakes_laundered_points"] == pytest.approx(-25.0)
    assert result["audit"]["reals_laundered_points"] == pytest.approx(0.0)
    assert result["real_source_fpr"] == {"a": 0.0, "b": 0.5}
    assert result["worst_real_source_fpr"] == 0.5
    assert result["laundered_per_source"]["f"]["recall_fake"] == pytest.approx(0.5)


def test_refuses_to_overwrite_and_missing_models(tiny_model_path, data_with_fair_pairs, tmp_path, capsys):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert main([str(tiny_model_path), "--data", str(data_with_fair_pairs), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err and (out / "mine.txt").read_text() == "keep"
    assert main([str(tmp_path / "none.keras"), "--data", str(data_with_fair_pairs), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
