"""What the command-line tools share: arguments first, TensorFlow later, one way to fail.

Every CLI (``training.train``, ``training.evaluate``, ``training.export_tfjs``,
``training.export_savedmodel``, ``training.converters.efficientnet_lite``,
``training.compare``, ``training.recalibrate``)
parses its arguments before it imports TensorFlow or Keras, so ``--help`` and
a mistyped option answer in well under a second instead of the 10-30 s
TensorFlow takes to load. TensorFlow is then loaded, as late as possible
(after the cheap checks: files exist, nothing would be overwritten), through
``aiface.quiet``, without its CUDA noise; ``aiface.bundle.load_bundle`` does
that itself. A usage error, whether argparse's or one found later (a
missing model, a folder that would be overwritten), is one ``error:`` line on
stderr and exit code 2 (``fail``).

The names the training parser offers are here, not in the modules that
define them (``training.models.backbones``, ``training.data.batches``,
``training.models.distribute``), because those import TensorFlow;
``tests/test_cli.py`` checks that the two agree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

USAGE_ERROR = 2

BACKBONES = ("efficientnet_lite0", "efficientnet_lite2", "resnet50", "tiny")
HEADS = ("second_order", "average")
FAIR_SOURCES = ("zoya_140k_subset", "roeishc_ffhq_sg2")
STRATEGIES = ("default", "mirrored", "multiworker")


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return value


def probability(text: str) -> float:
    """An argparse type: a number in [0, 1] (NaN refused)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], not {text!r}")
    return value


def add_calibration_arguments(parser: argparse.ArgumentParser) -> None:
    """The threshold's limits, as ``training.models.calibration.calibrate`` takes them."""
    parser.add_argument(
        "--target-fpr", type=probability, default=0.01, help="share of all real faces in valid called fake"
    )
    parser.add_argument(
        "--max-source-fpr", type=probability, default=0.03,
        help="share of any one source's real faces in valid called fake",
    )
    parser.add_argument(
        "--calibrate-laundered", action="store_true",
        help="both limits also hold for laundered copies of valid (128 px + JPEG 40), as for photos "
        "re-compressed on their way to you; fewer fakes are caught",
    )
    parser.add_argument(
        "--calibrate-whole-image", dest="calibrate_faces", action="store_false",
        help="fit the temperature and threshold on whole images (their centred square) instead of the faces "
        "found in them, which is what the service, the scan and the extension score",
    )


def calibration_options(args: argparse.Namespace) -> dict:
    """``training.models.calibration.calibrate``'s keyword arguments from the options above."""
    from training.evaluate import finder_for

    return {"target_fpr": args.target_fpr, "max_source_fpr": args.max_source_fpr,
            "laundered": args.calibrate_laundered, "finder": finder_for(not args.calibrate_faces)}


def check_new_bundle(model: Path, out: Path, overwrite: bool) -> None:
    """Stop before any work where writing a bundle made from ``model`` at ``out`` would lose a user's file."""
    if out.resolve() == model.resolve():
        raise FileExistsError("--out is the model itself; write the new bundle elsewhere")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")


def run_bundle_command(work, args: argparse.Namespace) -> int:
    """``work(args)`` for a command that writes a new bundle from a trained one (``training.add_head``,
    ``training.recalibrate``): the errors a user can mend end as one ``error:`` line and exit status 2."""
    from aiface.bundle import ModelLoadError
    from training.data.layout import LayoutError

    try:
        work(args)
    except (FileExistsError, ModelLoadError, LayoutError, ValueError) as error:
        return fail(error)
    return 0


def fail(error: BaseException | str) -> int:
    """Print ``error: ...`` on stderr and return the usage-error exit code."""
    print(f"error: {error}", file=sys.stderr)
    return USAGE_ERROR


def train_main() -> None:
    """The ``aiface-train`` script: runs ``training.train`` as ``python -m`` does.

    ``training.train`` parses its arguments in its ``__main__`` block before
    it imports Keras; importing it to call ``main()`` would load Keras first.
    """
    import runpy

    runpy.run_module("training.train", run_name="__main__", alter_sys=True)
