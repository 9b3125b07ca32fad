"""The shipped model's recipe (training/recipes/aiface.sh) runs end to end, at toy scale."""

import json
import os
import subprocess
import sys

import pytest

from helpers import REPO

RECIPE = REPO / "training" / "recipes" / "aiface.sh"


def _run(*args):
    env = {**os.environ, "PYTHON": sys.executable, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(["bash", str(RECIPE), *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=1200)


@pytest.mark.slow
@pytest.mark.process
def test_the_recipe_makes_the_shipped_models_kind_of_bundle_and_its_export(shipped_sources_dataset, tmp_path):
    out = tmp_path / "run"
    done = _run(shipped_sources_dataset, out, "--smoke")
    assert done.returncode == 0, done.stderr[-3000:]
    metadata = json.loads((out / "model" / "aiface.json").read_text())
    assert metadata["version"] == "4.0.0" and metadata["backbone"] == "tiny"
    assert metadata["training"]["add_head"]["heads"] == ["generator", "decoder", "diffusion"]
    assert metadata["metrics"]["calibration"]["scored"] == "faces"
    # Each stage started from the one before it.
    assert metadata["training"]["add_head"]["from"]["version"] == "3.0.0"
    assert json.loads((out / "tfjs" / "metadata.json").read_text())["version"] == "4.0.0"
    assert (out / "tfjs" / "model.json").is_file()

    again = _run(shipped_sources_dataset, out, "--smoke")
    assert again.returncode == 2 and "exists; choose a new folder" in again.stderr


def test_the_recipe_says_how_to_call_it():
    done = _run("only-one-argument")
    assert done.returncode == 2 and "usage: bash training/recipes/aiface.sh DATA OUT [--smoke]" in done.stderr
