"""The command-line tools: arguments before TensorFlow, exit code 2 for usage errors, no CUDA noise."""

from __future__ import annotations

import subprocess
import sys

import pytest

CLIS = [
    "training.train",
    "training.evaluate",
    "training.export_tfjs",
    "training.export_savedmodel",
    "training.converters.efficientnet_lite",
    "training.compare",
    "training.recalibrate",
]

# Runs a CLI as `python -m` would, then says which heavy modules it had loaded.
RUN_AND_REPORT = """
import runpy, sys
sys.argv = [{module!r}, *{argv!r}]
try:
    runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
except SystemExit as exit:
    code = exit.code
heavy = sorted({{"tensorflow", "keras", "matplotlib", "sklearn"}} & set(sys.modules))
print("LOADED", ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def run_cli(module: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", RUN_AND_REPORT.format(module=module, argv=list(argv))],
        capture_output=True,
        text=True,
        timeout=120,
    )


def loaded(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.process
@pytest.mark.parametrize("module", CLIS)
def test_help_answers_before_tensorflow_loads(module):
    result = run_cli(module, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: python -m {module}")
    assert loaded(result) == "LOADED"


@pytest.mark.process
@pytest.mark.parametrize("module", CLIS)
def test_a_mistyped_option_is_one_error_line_and_exit_code_2(module):
    result = run_cli(module, "--no-such-option")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert loaded(result) == "LOADED"
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(f"python -m {module}: error: ")


@pytest.mark.process
@pytest.mark.parametrize(
    "module, argv",
    [
        ("training.evaluate", ["nope.keras", "nope", "--out", "report"]),
        ("training.export_tfjs", ["nope.keras", "out"]),
        ("training.export_savedmodel", ["nope.keras", "out"]),
    ],
)
def test_a_missing_model_is_exit_code_2_with_one_error_line(module, argv, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", module, *[str(tmp_path / a) if a != "--out" else a for a in argv]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr


@pytest.mark.process
def test_the_aiface_train_script_also_parses_before_tensorflow_loads():
    code = (
        "import sys; from training.cli import train_main; sys.argv = ['aiface-train', '--help']\n"
        "try:\n    train_main()\nexcept SystemExit as exit:\n    code = exit.code\n"
        "print('LOADED', ','.join(sorted({'tensorflow', 'keras'} & set(sys.modules))), file=sys.stderr)\n"
        "sys.exit(code)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage: python -m training.train" in result.stdout
    assert loaded(result) == "LOADED"


def test_the_training_parser_offers_the_names_its_modules_define():
    from training import cli
    from training.data import batches
    from training.models import backbones, distribute

    assert cli.BACKBONES == tuple(backbones.BACKBONES)
    assert cli.HEADS == backbones.HEADS
    assert cli.FAIR_SOURCES == batches.FAIR_SOURCES
    assert cli.STRATEGIES == distribute.STRATEGIES


def test_a_model_is_named_after_its_run_folder_unless_named():
    from training.train import parse_args

    assert parse_args(["data", "--out", "runs/lite0-256/"]).name == "lite0-256"
    assert parse_args(["data", "--out", "runs/x", "--name", "aiface"]).name == "aiface"


@pytest.mark.slow
@pytest.mark.process
def test_tensorflow_starts_without_cuda_noise_on_a_cpu_machine():
    from aiface.quiet import has_nvidia_device

    if has_nvidia_device():
        pytest.skip("this machine has an NVIDIA device: the CUDA lines are not noise here")
    code = (
        "from aiface.quiet import quiet_tensorflow; quiet_tensorflow(); "
        "import tensorflow as tf; print(int(tf.constant(1) + 1))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout == "2\n"
    assert result.stderr == ""
