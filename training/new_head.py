"""What fitting a new final layer on a trained model's frozen features involves besides the fit itself, shared
by ``training.refit_head`` and ``training.decoder_head``: the output checked before any work, the regularisation
strength chosen on ``valid``, and the new bundle recorded, calibrated and saved.

Why one place: both tools make a bundle another tool (the service, the export, a later refit) must be able to
trace back to the model it came from, so what they record and how they calibrate must not drift apart.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from training import cli


def add_bundle_arguments(parser: argparse.ArgumentParser, default_c: Sequence[float]) -> None:
    """The options every such tool takes: strengths, features cache, the new bundle's name, calibration, --overwrite."""
    parser.add_argument("--c", action="append", type=float, metavar="C",
                        help="inverse regularisation strengths to choose from (repeatable; default: "
                        + ", ".join(map(str, default_c)) + ")")
    parser.add_argument("--cache", type=Path, help="features cache (default: a 'features' folder beside --out)")
    parser.add_argument("--name", help="the new model's name (default: the model's)")
    parser.add_argument("--version", help="the new model's version (default: the model's)")
    cli.add_calibration_arguments(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")


def check_bundle_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, default_c: Sequence[float],
                           argv: list[str] | None) -> None:
    """Usage errors stop here, before TensorFlow loads; defaults that depend on other options are filled in."""
    if args.out.suffix != ".keras":
        parser.error(f"--out must end in .keras, not {args.out}")
    args.c = args.c or list(default_c)
    if any(not c > 0 for c in args.c):
        parser.error("every --c must be positive")
    args.cache = args.cache or args.out.parent / "features"
    args.command = shlex.join(["python", "-m", parser.prog.split()[-1], *(sys.argv[1:] if argv is None else argv)])


def margin_as_logits(w: np.ndarray, b: float) -> list[np.ndarray]:
    """Kernel and bias of a two-way ``logits`` Dense layer whose fake-minus-real logit is ``w . x + b``, split
    evenly between the two outputs (so a softmax of them is ``sigmoid(w . x + b)``)."""
    w = np.asarray(w, np.float64).reshape(-1)
    return [np.stack([-w / 2.0, w / 2.0], axis=1).astype(np.float32), np.array([-b / 2.0, b / 2.0], np.float32)]


def check_out(args: argparse.Namespace) -> None:
    """Stop before any work if ``--out`` would overwrite the model or, without ``--overwrite``, any file."""
    if args.out.resolve() == args.model.resolve():
        raise FileExistsError("--out is the model itself; write the new bundle elsewhere")
    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} exists; pass --overwrite to replace it")


def choose_c(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None, strengths: Sequence[float],
             scores_of: Callable[[object], list[float]], what: str) -> tuple[float, float, object, list[float]]:
    """(mean score, C, fit, [as they are, laundered]) of the L2 logistic regression whose ``scores_of`` is best."""
    from sklearn.linear_model import LogisticRegression

    fits = []
    for c in sorted(strengths):
        fit = LogisticRegression(C=c, max_iter=3000, tol=1e-5).fit(x, y, sample_weight=weights)
        scores = scores_of(fit)
        fits.append((float(np.mean(scores)), c, fit, scores))
        print(f"C={c:g}: {what} {np.mean(scores):.4f} (as they are {scores[0]:.4f}, laundered {scores[1]:.4f})"
              f"{'' if fit.n_iter_[0] < fit.max_iter else ', not converged'}", file=sys.stderr)
    return max(fits, key=lambda item: item[0])


def save_new_head(bundle, args: argparse.Namespace, key: str, record: dict, valid_examples: Sequence,
                  summary: str) -> Path:
    """Record where the bundle came from under ``metadata.training[key]``, calibrate it on ``valid_examples`` as
    ``training.train`` calibrates, and save it at ``--out``."""
    from aiface.bundle import save_bundle
    from training.calibration import calibrate

    metadata = bundle.metadata
    base = {"name": metadata.name, "version": metadata.version, "threshold": metadata.threshold,
            "temperature": metadata.temperature, "training": metadata.training}
    metadata.name = args.name or metadata.name
    metadata.version = args.version or metadata.version
    metadata.temperature = 1.0
    metadata.metrics = {}
    metadata.training = {"command": args.command, key: {"from": base, **record}}
    calibrate(bundle, valid_examples, target_fpr=args.target_fpr, max_source_fpr=args.max_source_fpr,
              laundered=args.calibrate_laundered)
    path = save_bundle(bundle, args.out, overwrite=True)
    print(f"wrote {path}: {summary}; temperature {metadata.temperature:.3f}, threshold {metadata.threshold:.4f}",
          file=sys.stderr)
    return path


def run(work: Callable[[argparse.Namespace], Path], args: argparse.Namespace) -> int:
    """``work(args)`` with the errors a user can mend reported as one line and exit status 2."""
    from aiface.bundle import ModelLoadError
    from training.layout import LayoutError

    try:
        work(args)
    except (FileExistsError, ModelLoadError, LayoutError, ValueError) as error:
        return cli.fail(error)
    return 0
