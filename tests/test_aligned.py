"""Aligned pairs: the autoencoders, the data command, the sharpness guard and training on the pairs."""

import hashlib
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import encode, face_like
from training.aligned import main as aligned_main
from training.autoencoders import families
from training.converters.torch_state import StateDictError, load_state_dict
from training.data.batches import sampling_weights
from training.data.layout import Example, list_split
from training.evaluation.shortcut_guard import guard, laplacian_variance

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "tests" / "data"
TAEF2_SOURCE = REPO.parent / "shared" / "weights" / "taef2"
needs_taef2_source = pytest.mark.skipif(not TAEF2_SOURCE.is_dir(), reason="../shared/weights/taef2 is not here")


@pytest.fixture(scope="module")
def taef2():
    return families.load_autoencoder("taef2")


def test_committed_taef2_weights_match_their_digest():
    path = families.weights_path("taef2")
    digest = path.with_name(path.name + ".sha256").read_text().split()[0]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert (path.parent / "taef2.LICENSE").read_text().startswith("MIT License")


def test_taef2_reconstructs_a_photo_sharply(taef2):
    _, _, chained = taef2
    photo = np.asarray(Image.open(DATA_DIR / "astronaut_face.jpg").convert("RGB"))
    rebuilt = families.reconstruct(chained, [photo])[0]
    assert rebuilt.shape == photo.shape and rebuilt.dtype == np.uint8
    # Measured on 16 valid faces of ../shared/data: 34.3 dB; a layout error gives under 15.
    assert families.psnr(photo, rebuilt) > 30.0
    assert not np.array_equal(photo, rebuilt)


def test_sides_not_divisible_by_8_come_back_the_same_size(taef2):
    _, _, chained = taef2
    odd = face_like(3, size=45)
    assert families.reconstruct(chained, [odd])[0].shape == (45, 45, 3)


@needs_taef2_source
def test_state_dict_reader_and_converter_give_the_committed_weights(tmp_path):
    state = load_state_dict(TAEF2_SOURCE / "taef2_decoder.pth")
    assert len(state) == 79 and state["19.weight"].shape == (3, 64, 3, 3) and state["1.weight"].dtype == np.float16
    from training.converters.taef2 import main

    out = tmp_path / "taef2.weights.npz"
    assert main(["--from", str(TAEF2_SOURCE), "--out", str(out)]) == 0
    with np.load(out) as converted, np.load(families.weights_path("taef2")) as committed:
        assert set(converted.files) == set(committed.files)
        assert all(np.array_equal(converted[k], committed[k]) for k in committed.files)


def test_state_dict_reader_refuses_code(tmp_path):
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps(os.system))
    with pytest.raises(StateDictError, match="does not hold"):
        load_state_dict(path)
    (tmp_path / "plain.pth").write_bytes(b"not a zip")
    with pytest.raises(StateDictError, match="not a PyTorch state dict"):
        load_state_dict(tmp_path / "plain.pth")


@pytest.mark.slow  # over 5 s on 2 shared cores
def test_our_families_build_and_round_trip_their_weights(tmp_path):
    for name in ("ae4_tconv", "ae16_shuffle"):
        spec = families.family(name)
        encoder, decoder, chained = families.build_autoencoder(spec)
        assert encoder(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 4, 4, spec.latent)
        assert chained(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 32, 32, 3)
        path = tmp_path / f"{name}.weights.npz"
        families.save_weights([encoder, decoder], path)
        _, _, reloaded = families.load_autoencoder(name, path)
        image = np.random.default_rng(0).random((1, 16, 16, 3)).astype(np.float32)
        np.testing.assert_allclose(reloaded(image), chained(image), atol=2e-2)
    with pytest.raises(families.AutoencoderError, match="training.autoencoders.train"):
        families.load_autoencoder("ae4_tconv", tmp_path / "missing.npz")


@pytest.fixture(scope="module")
def jpeg_dataset(tmp_path_factory):
    """A 140k-layout folder with JPEG reals of known quality and PNG ones."""
    root = tmp_path_factory.mktemp("jpegdata")
    for split in ("train", "valid", "test"):
        for label in ("real", "fake"):
            (root / split / label).mkdir(parents=True)
            for index in range(4):
                pixels = face_like(10 * index + len(split), size=48, fake=label == "fake")
                name = f"src{'jpg' if index % 2 else 'png'}_{split}{index:02d}"
                if index % 2:
                    (root / split / label / f"{name}.jpg").write_bytes(encode(pixels, "JPEG", quality=60))
                else:
                    (root / split / label / f"{name}.png").write_bytes(encode(pixels))
    return root


@pytest.mark.slow  # over 5 s on 2 shared cores
def test_aligned_pairs_keep_size_and_jpeg_history_and_resume(jpeg_dataset, tmp_path, capsys):
    out = tmp_path / "aligned"
    assert aligned_main([str(jpeg_dataset), "--out", str(out)]) == 0
    for split in ("train", "valid", "test"):
        examples = list_split(out, split)
        assert len(examples) == 8  # 4 reals, each with its reconstruction
        assert {e.source for e in examples} == {"taef2-srcjpg", "taef2-srcpng"}
    original = Image.open(jpeg_dataset / "train" / "real" / "srcjpg_train01.jpg")
    for label in ("real", "fake"):
        with Image.open(out / "train" / label / "taef2-srcjpg_train01.jpg") as saved:
            assert saved.size == original.size
            assert saved.quantization == original.quantization  # the same tables: the same JPEG history
    assert (out / "train" / "fake" / "taef2-srcpng_train00.png").is_file()
    records = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert len(records) == 12 and all(r["psnr_db"] > 20 for r in records)
    assert (out / "sources.csv").read_text().count("\n") == 1 + 24
    before = (out / "pairs.jsonl").read_text()
    capsys.readouterr()
    assert aligned_main([str(jpeg_dataset), "--out", str(out)]) == 0
    assert "0 pairs to make (12 already" in capsys.readouterr().err
    assert (out / "pairs.jsonl").read_text() == before


@pytest.mark.slow  # over 5 s on 2 shared cores
def test_aligned_per_source_is_a_stable_choice_and_refuses_the_repository(jpeg_dataset, tmp_path, capsys):
    out = tmp_path / "few"
    assert aligned_main([str(jpeg_dataset), "--out", str(out), "--split", "valid", "--per-source", "1"]) == 0
    assert len(list_split(out, "valid")) == 4
    with pytest.raises(SystemExit) as exit_info:
        aligned_main([str(jpeg_dataset), "--out", str(REPO / "aligned")])
    assert exit_info.value.code == 2
    assert "inside the repository" in capsys.readouterr().err
    assert aligned_main([str(jpeg_dataset), "--out", str(out), "--decoder", "nope"]) == 2


def test_sharpness_guard_sees_blur_as_a_shortcut(tmp_path):
    # Reconstructions that are only blurred copies: the guard must flag them (AUC 1).
    from PIL import ImageFilter

    root = tmp_path / "blurry"
    for label in ("real", "fake"):
        (root / "test" / label).mkdir(parents=True)
    for index in range(6):
        rng = np.random.default_rng(index)
        pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        name = f"blurnet-src_{index:02d}.png"
        (root / "test" / "real" / name).write_bytes(encode(pixels))
        blurred = np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(1.5)))
        (root / "test" / "fake" / name).write_bytes(encode(blurred))
        assert laplacian_variance(blurred) < laplacian_variance(pixels)
    result = guard(root, "test")
    assert result["blurnet"]["pairs"] == 6
    assert result["blurnet"]["laplacian_variance_auc"] == pytest.approx(1.0)
    assert result["blurnet"]["high_frequency_share_auc"] == pytest.approx(1.0)


def test_sampling_gives_the_aligned_pairs_their_share():
    groups = {("zoya_140k_subset", 0): 5, ("zoya_140k_subset", 1): 5, ("utk", 0): 9, ("gen", 1): 9,
              ("taef2-utk", 0): 4, ("taef2-utk", 1): 4, ("taef2-lfw", 0): 4, ("taef2-lfw", 1): 4}
    examples = [Example(Path(f"{s}_{label}_{i}.jpg"), label, s) for (s, label), n in groups.items() for i in range(n)]
    weights = sampling_weights(examples, fair_share=0.4, aligned_sources=("taef2-utk", "taef2-lfw"),
                               aligned_share=0.3)
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights[("zoya_140k_subset", 0)] == pytest.approx(0.2)
    assert weights[("taef2-utk", 1)] == weights[("taef2-lfw", 0)] == pytest.approx(0.075)
    assert weights[("utk", 0)] == weights[("gen", 1)] == pytest.approx(0.15)
    # Without other sources the fair and aligned shares grow in proportion.
    only = [e for e in examples if e.source not in ("utk", "gen")]
    weights = sampling_weights(only, fair_share=0.4, aligned_sources=("taef2-utk", "taef2-lfw"), aligned_share=0.3)
    assert weights[("zoya_140k_subset", 1)] == pytest.approx(0.4 / 0.7 / 2)
    with pytest.raises(ValueError, match="more than 1"):
        sampling_weights(examples, fair_share=0.8, aligned_sources=("taef2-utk",), aligned_share=0.3)


def test_reconstruction_of_a_jpeg_is_not_smoother_than_its_resaved_original(taef2):
    # The pair's two images share their JPEG history; the guard's feature must not separate them much on a photo.
    _, _, chained = taef2
    photo = np.asarray(Image.open(DATA_DIR / "astronaut_face.jpg").convert("RGB"))
    rebuilt = families.reconstruct(chained, [photo])[0]

    def resave(pixels):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        return np.asarray(Image.open(buffer))

    ratio = laplacian_variance(resave(rebuilt)) / laplacian_variance(resave(photo))
    assert 0.6 < ratio < 1.4


@pytest.mark.slow
def test_training_draws_aligned_pairs_and_selects_on_them(tiny_dataset, tmp_path, capsys):
    from aiface.bundle import read_metadata
    from training.train import main as train_main

    aligned = tmp_path / "aligned"
    assert aligned_main([str(tiny_dataset), "--out", str(aligned), "--split", "train", "--split", "valid"]) == 0
    out = tmp_path / "run"
    # No --crop-size: it follows --image-size (28 of 32).
    argv = [str(tiny_dataset), "--backbone", "tiny", "--image-size", "32", "--batch-size", "8", "--steps-per-epoch",
            "2", "--epochs", "1", "--aligned", str(aligned), "--aligned-share", "0.5", "--out", str(out)]
    capsys.readouterr()
    assert train_main(argv) == 0
    err = capsys.readouterr().err
    assert "taef2-synth_a/fake 0.125" in err and "synth_a/real 0.125" in err
    assert "(the mean of the fair pairs' and the aligned pairs' AUCs)" in err
    training = read_metadata(out / "model.json").training
    assert training["settings"]["crop_size"] == 28 and training["aligned_train_pairs"] == 12
    with pytest.raises(SystemExit) as exit_info:  # a usage error: argparse's exit code 2
        train_main([*argv[:-1], str(tmp_path / "bad"), "--fair-share", "0.8"])
    assert exit_info.value.code == 2
    assert "add up to more than 1" in capsys.readouterr().err


@pytest.mark.slow
def test_autoencoder_training_writes_weights_and_resumes(tiny_dataset, tmp_path, capsys):
    from training.autoencoders.train import main as ae_main

    out = tmp_path / "ae"
    argv = [str(tiny_dataset), "--family", "ae16_shuffle", "--out", str(out), "--steps", "2", "--patch", "16",
            "--batch-size", "2", "--checkpoint-every", "1", "--images", "8"]
    assert ae_main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 2 and result["valid_psnr_db"] > 0
    assert ae_main(argv) == 2  # a run is there: neither resumed nor overwritten without asking
    assert "use --resume or --overwrite" in capsys.readouterr().err
    assert ae_main([*argv[:5], "--steps", "3", *argv[7:], "--resume"]) == 0
    assert "resuming after step 2" in capsys.readouterr().err
    _, _, model = families.load_autoencoder("ae16_shuffle", out / "ae16_shuffle.weights.npz")
    assert model(np.zeros((1, 16, 16, 3), np.float32)).shape == (1, 16, 16, 3)
