"""A head beside a trained model's own, fitted on its frozen features: a second way for a fake to be caught.

    python -m training.add_head MODEL DATA_DIR --out NEW.keras --head NAME
        [--fake-source SOURCE ...] [--aligned ALIGNED_DIR ...] [--exclude-source SOURCE ...]
        [--view clean --view degraded --view laundered]
        [--c 0.0003 --c 0.001 ...] [--head-fpr 0.005] [--head-max-source-fpr 0.02] [--head-slope 2]
        [--whole-image] [--cache DIR] [--name aiface] [--version 4.0.0]
        [--target-fpr 0.01] [--max-source-fpr 0.03] [--overwrite]

The network and its heads stay exactly as trained. A logistic regression on the frozen features
(``training.models.features``) learns the new head: ``train``'s images of each ``--fake-source`` and the
reconstructions of each ``--aligned`` folder's pairs (``training.aligned``) against every real source of
``train`` (the pairs' originals included), under each ``--view``. Each source weighs the same within its class,
whatever its size: 190 modern portraits count as much as 3,500 UTKFace crops, so the head cannot buy its
fakes by accusing the kind of photo it saw least of. Features are those of the faces found, framed as the
service frames them (``--whole-image``: the centred square). The regularisation strength is chosen among
``--c`` on ``valid``: the ROC AUC of the same fakes against every real, as they are and laundered.

The heads are joined as one layer (``aiface.layers.LargestHead``): the model's own fake-minus-real logit
(the largest of its heads' margins, when it has several) is shifted so that 0 is its stored threshold, the new
head's margin so that 0 calls ``--head-fpr`` of ``valid``'s real faces fake and no more than
``--head-max-source-fpr`` of any one real source's, scaled to ``--head-slope`` times the model's own spread on
those reals; the image scores by the larger margin, and the model's threshold logit is added back so that
where the model's own heads decide, its probability is unchanged. Then the bundle is calibrated on ``valid``
as ``training.train`` calibrates (faces found; one temperature; ``--target-fpr``, ``--max-source-fpr``).

Why a second head and not one refitted final layer: measured on aiface 2.2.0's features, every point a shared
final layer gained on aligned pairs was paid on the fair pairs (docs/model-history.md); a new kind of fake
lies in directions the old ones do not use, and the larger margin keeps the old ranking. Why the steeper
slope: real faces the new head passes must not outrank the old head's fakes (slope 2 and a 0.6 % head kept
the 140k sample's AUC at 0.947 where slope 1 and 1 % gave 0.922). aiface 3.0.0's decoder head is this tool
with ``--aligned`` (TAEF2 pairs) and no ``--fake-source``; aiface 4.0.0's diffusion head is it with the
diffusion sources (``training/recipes/aiface4.sh``). MODEL is never changed.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training import cli
from training.models.features import VIEWS

DEFAULT_C = (0.0001, 0.0003, 0.001, 0.003)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.add_head", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="the trained bundle's .keras file (its .json beside it)")
    parser.add_argument("data_dir", type=Path, help="folder in the 140k layout (train fits, valid selects)")
    parser.add_argument("--out", type=Path, required=True, help="the new bundle's .keras path")
    parser.add_argument("--head", required=True, help="the new head's name, e.g. diffusion (recorded)")
    parser.add_argument("--fake-source", action="append", default=[], metavar="SOURCE",
                        help="a fake source of DATA_DIR whose train images the head learns (repeatable)")
    parser.add_argument("--aligned", action="append", default=[], type=Path, metavar="DIR",
                        help="a folder of aligned pairs made by training.aligned (repeatable)")
    parser.add_argument("--exclude-source", action="append", default=[], metavar="SOURCE",
                        help="leave a source's images out of the fit and the selection, for leave-one-out runs "
                        "(their features are still read with the rest, so such runs share one cache)")
    parser.add_argument("--view", action="append", choices=VIEWS,
                        help="views of the training images (repeatable; default: all three)")
    parser.add_argument("--head-fpr", type=cli.probability, default=0.005,
                        help="share of valid's real faces the new head alone calls fake (where its margin is 0)")
    parser.add_argument("--head-max-source-fpr", type=cli.probability, default=0.02,
                        help="share of any one real source's valid faces the new head alone calls fake, at most")
    parser.add_argument("--head-slope", type=float, default=2.0,
                        help="the new head's margin spread, in multiples of the model's own on valid's reals")
    parser.add_argument("--whole-image", action="store_true",
                        help="features of the whole centred square instead of the faces found")
    parser.add_argument("--c", action="append", type=float, metavar="C",
                        help="inverse regularisation strengths to choose from (repeatable; default: "
                        + ", ".join(map(str, DEFAULT_C)) + ")")
    parser.add_argument("--cache", type=Path, help="features cache (default: a 'features' folder beside --out)")
    parser.add_argument("--name", help="the new model's name (default: the model's)")
    parser.add_argument("--version", help="the new model's version (default: the model's)")
    cli.add_calibration_arguments(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    args = parser.parse_args(argv)
    if args.out.suffix != ".keras":
        parser.error(f"--out must end in .keras, not {args.out}")
    if not args.fake_source and not args.aligned:
        parser.error("name the fakes the head learns: --fake-source SOURCE and/or --aligned DIR")
    if not 0.0 < args.head_fpr < 1.0 or not 0.0 < args.head_max_source_fpr < 1.0:
        parser.error("--head-fpr and --head-max-source-fpr must lie strictly between 0 and 1")
    if not args.head_slope > 0:
        parser.error(f"--head-slope must be positive, not {args.head_slope}")
    args.c = args.c or list(DEFAULT_C)
    if any(not c > 0 for c in args.c):
        parser.error("every --c must be positive")
    args.view = args.view or list(VIEWS)
    args.cache = args.cache or args.out.parent / "features"
    args.command = shlex.join(["python", "-m", "training.add_head", *(sys.argv[1:] if argv is None else argv)])
    return args


def margins_of(model) -> tuple[np.ndarray, np.ndarray]:
    """(W, b), (D, K) and (K,): the model's fake-minus-real logit (temperature folded in) is the largest of
    ``features @ W + b``; one column for a model with one final layer, one a head for a model with heads."""
    from training.models.backbones import HEADS_LAYER, LOGITS_LAYER, has_heads

    kernel, bias = (np.asarray(w, np.float64) for w in model.get_layer(LOGITS_LAYER).get_weights())
    slope, intercept = kernel[:, 1] - kernel[:, 0], bias[1] - bias[0]
    if not has_heads(model):
        return slope[:, None], np.array([intercept])
    # After the heads the logits layer is one affine map of the largest margin (add_heads, then the
    # temperature folded in); a positive slope commutes with the max, so it goes into every column.
    heads, offsets = (np.asarray(w, np.float64) for w in model.get_layer(HEADS_LAYER).get_weights())
    return heads * slope[0], offsets * slope[0] + intercept


def margin_as_logits(w: np.ndarray, b: float) -> list[np.ndarray]:
    """Kernel and bias of a two-way ``logits`` Dense layer whose fake-minus-real logit is ``w . x + b``, split
    evenly between the two outputs (so a softmax of them is ``sigmoid(w . x + b)``)."""
    w = np.asarray(w, np.float64).reshape(-1)
    return [np.stack([-w / 2.0, w / 2.0], axis=1).astype(np.float32), np.array([-b / 2.0, b / 2.0], np.float32)]


def add_heads(model, heads: np.ndarray, offsets: np.ndarray, zero: float = 0.0):
    """The model with its final layer (or heads) replaced by linear heads (columns of ``heads``) joined by their
    largest margin: features -> ``heads`` Dense(K) -> ``LargestHead`` -> ``logits`` Dense(2) -> Softmax.

    The new ``logits`` layer splits the margin evenly between the two outputs and adds ``zero`` back, so the
    fake-minus-real logit is the largest margin plus ``zero``. With ``zero`` the logit the heads' margins
    were shifted by, an image the model's own heads decide gets the model's own logit: a temperature alone
    cannot undo a shift (without it, measured on 3.0.0: ECE 0.044 against 0.015).
    """
    import keras

    from aiface.layers import LargestHead
    from training.models.backbones import HEADS_LAYER, LOGITS_LAYER, PROBABILITIES_LAYER, has_heads

    features = model.get_layer(HEADS_LAYER if has_heads(model) else LOGITS_LAYER).input
    dense = keras.layers.Dense(heads.shape[1], name=HEADS_LAYER)
    margin = LargestHead(name="largest_head")(dense(features))
    split = keras.layers.Dense(2, name=LOGITS_LAYER)
    outputs = keras.layers.Softmax(name=PROBABILITIES_LAYER)(split(margin))
    joined = keras.Model(model.inputs, outputs, name=model.name)
    dense.set_weights([heads.astype(np.float32), offsets.astype(np.float32)])
    split.set_weights(margin_as_logits(np.ones(1), zero))
    return joined


def generator_head_only(bundle):
    """(model, temperature) of the model a bundle with heads was made from first: its network with the first
    (generator) head as the final ``logits`` layer again, and the temperature folded into that head.

    So ``training.train --init-from`` can start from a shipped bundle with heads: the added heads are dropped
    (fit them again on the new features) and the generator head's logit is the original model's.
    """
    import keras

    from training.models.backbones import HEADS_LAYER, LOGITS_LAYER, PROBABILITIES_LAYER

    made = added_head_record(bundle.metadata.training)
    if made is None or "generator_zero_logit" not in made:
        raise ValueError("the bundle's metadata does not record how its heads were shifted (training.add_head)")
    heads = bundle.model.get_layer(HEADS_LAYER)
    kernel, offsets = heads.get_weights()
    logits = keras.layers.Dense(2, name=LOGITS_LAYER)
    outputs = keras.layers.Softmax(name=PROBABILITIES_LAYER)(logits(heads.input))
    model = keras.Model(bundle.model.inputs, outputs, name=bundle.model.name)
    logits.set_weights(margin_as_logits(kernel[:, 0], float(offsets[0]) + made["generator_zero_logit"]))
    temperature = made.get("generator_temperature", made.get("from", {}).get("temperature", 1.0))
    return model, float(temperature)


def added_head_record(training: dict) -> dict | None:
    """What ``training.add_head`` recorded of a bundle's heads (its ``metadata.training``), or None."""
    # aiface 3.0.0 recorded its head under "decoder_head" (training.decoder_head, this tool's first form).
    return training.get("add_head", training.get("decoder_head"))


def weights_by_source(sources: Sequence[str], labels: np.ndarray) -> np.ndarray:
    """Sample weights giving every source the same total weight within its class, and both classes the same."""
    sources = np.asarray(sources, dtype=object)
    weights = np.zeros(len(sources))
    for label in (0, 1):
        names = sorted(set(sources[labels == label]))
        for name in names:
            mask = (sources == name) & (labels == label)
            weights[mask] = 1.0 / (len(names) * mask.sum())
    return weights * len(sources) / 2.0


def threshold_of(margins: np.ndarray, sources: Sequence[str], fpr: float, max_source_fpr: float) -> float:
    """A margin above which lie at most ``fpr`` of these reals, and at most ``max_source_fpr`` of any one
    source's: a source of six photos and a 2 % limit gets none of its six above it."""
    sources = np.asarray(sources, dtype=object)
    # "higher": a real margin, never one interpolated below the photo that must stay below it.
    zero = float(np.quantile(margins, 1.0 - fpr, method="higher"))
    for name in set(sources):
        zero = max(zero, float(np.quantile(margins[sources == name], 1.0 - max_source_fpr, method="higher")))
    return zero


@dataclass(frozen=True)
class Head:
    """A fitted head as a linear function of the raw features, and how it was chosen."""

    w: np.ndarray
    b: float
    c: float
    score: float  # the mean of ``aucs``
    aucs: list[float]  # valid ROC AUC as they are, laundered


def learn(x: np.ndarray, y: np.ndarray, sources: Sequence[str], strengths: Sequence[float],
          selection: Sequence[tuple[np.ndarray, np.ndarray]]) -> Head:
    """The L2 logistic regression on standardised ``x`` (every source weighing alike) whose mean ROC AUC on the
    ``selection`` sets (features, labels: as they are, laundered) is best among the ``strengths``."""
    from scipy.special import expit
    from sklearn.linear_model import LogisticRegression

    from training.evaluation.metrics import roc_auc

    weights = weights_by_source(sources, y)
    mean, scale = x.mean(axis=0, dtype=np.float64), x.std(axis=0, dtype=np.float64) + 1e-6
    x = (x - mean) / scale
    fits = []
    for c in sorted(strengths):
        fit = LogisticRegression(C=c, max_iter=3000, tol=1e-5).fit(x, y, sample_weight=weights)
        # The AUC of the margins, through a logistic that does not round them into ties.
        scores = [roc_auc(labels, expit(fit.decision_function((rows - mean) / scale))) or 0.0
                  for rows, labels in selection]
        fits.append((float(np.mean(scores)), c, fit, scores))
        print(f"C={c:g}: valid AUC {np.mean(scores):.4f} (as they are {scores[0]:.4f}, laundered {scores[1]:.4f})"
              f"{'' if fit.n_iter_[0] < fit.max_iter else ', not converged'}", file=sys.stderr)
    score, c, fit, scores = max(fits, key=lambda item: item[0])
    w = fit.coef_[0] / scale
    return Head(w, float(fit.intercept_[0] - np.dot(w, mean)), c, score, scores)


def join(model: tuple[np.ndarray, np.ndarray], head: Head, model_zero: float, reals: np.ndarray,
         real_sources: Sequence[str], args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, float]:
    """(heads, offsets, spread) of the joined layer: the model's margins (``margins_of``) shifted by its threshold
    logit ``model_zero``, and the new head shifted to its own threshold on ``reals`` (valid's real faces' features)
    and scaled to ``--head-slope`` times the model's spread on them."""
    w_model, b_model = model
    model_reals = (reals @ w_model + b_model).max(axis=1)
    head_reals = reals @ head.w + head.b
    head_zero = threshold_of(head_reals, real_sources, args.head_fpr, args.head_max_source_fpr)
    spread = args.head_slope * float(np.std(model_reals)) / max(float(np.std(head_reals)), 1e-12)
    heads = np.concatenate([w_model, (head.w * spread)[:, None]], axis=1)
    offsets = np.concatenate([b_model - model_zero, [(head.b - head_zero) * spread]])
    return heads, offsets, spread


@dataclass(frozen=True)
class Joined:
    """What ``fit_head`` found: the joined layer's weights, the model's threshold logit, and the head."""

    heads: np.ndarray  # (D, K + 1)
    offsets: np.ndarray  # (K + 1,)
    zero: float
    spread: float
    head: Head
    train_images: int
    valid_reals: np.ndarray  # the features the thresholds were set on, and their sources
    valid_real_sources: list[str]


def fit_head(args: argparse.Namespace, bundle, finder, margins: tuple[np.ndarray, np.ndarray] | None = None) -> Joined:
    """The new head fitted on ``bundle``'s features of ``args.data_dir`` and joined to the model's own
    (``margins``: to some of them only, as ``margins_of`` gives them; a benchmark drops a head so)."""
    from training.data.layout import list_split
    from training.models.calibration import logits_of
    from training.models.features import extract

    train_examples, valid_examples = list_split(args.data_dir, "train"), list_split(args.data_dir, "valid")
    known = {e.source for e in train_examples if e.label == 1}
    unknown = sorted(set(args.fake_source) - known)
    if unknown:
        raise ValueError(f"no fake train images of {', '.join(unknown)} in {args.data_dir} "
                         f"(its fake sources: {', '.join(sorted(known))})")

    def chosen(examples, aligned_split):
        fakes = [e for e in examples if e.label == 1 and e.source in args.fake_source]
        pairs = [e for folder in args.aligned for e in list_split(folder, aligned_split)]
        return [e for e in examples if e.label == 0] + fakes + pairs

    def features(examples, view, what):
        # Every named source's features are read (and cached) as one list; left-out sources are dropped after,
        # so leave-one-out fits read the cache of the full fit.
        x, kept = extract(bundle, args.model, examples, view, args.cache, progress=f"{what} ({view})",
                          finder=finder)
        keep = np.array([e.source not in args.exclude_source for e in kept], bool)
        return x[keep], [e for e, k in zip(kept, keep, strict=True) if k]

    if args.aligned and not any(list_split(folder, "valid") for folder in args.aligned):
        raise ValueError("the aligned folders hold no valid pairs; make them with training.aligned")
    fit_examples, select_examples = chosen(train_examples, "train"), chosen(valid_examples, "valid")
    rows, labels, sources = [], [], []
    for view in args.view:
        x, kept = features(fit_examples, view, "train")
        rows.append(x)
        labels.append([e.label for e in kept])
        # Each view of a source is a source of its own, so every view weighs alike.
        sources += [f"{e.source}/{view}" for e in kept]
    y_train = np.concatenate(labels)
    if not y_train.any():
        raise ValueError("every fake source named is left out (--exclude-source): nothing to learn")
    selection = [features(select_examples, view, "valid") for view in ("clean", "laundered")]
    head = learn(np.concatenate(rows), y_train, sources, args.c,
                 [(x, np.array([e.label for e in kept])) for x, kept in selection])

    x_valid, kept = selection[0]
    reals = [index for index, e in enumerate(kept) if e.label == 0]
    if not reals:
        raise ValueError(f"no readable real images in {args.data_dir}'s valid split to set the heads' thresholds on")
    zero = float(logits_of(bundle.metadata.threshold))
    real_sources = [kept[index].source for index in reals]
    heads, offsets, spread = join(margins or margins_of(bundle.model), head, zero, x_valid[reals], real_sources, args)
    return Joined(heads, offsets, zero, spread, head, int(len(y_train) // len(args.view)), x_valid[reals],
                  real_sources)


def fit(args: argparse.Namespace) -> Path:
    cli.check_new_bundle(args.model, args.out, args.overwrite)
    from aiface.bundle import load_bundle, save_bundle
    from training.data.layout import list_split
    from training.evaluate import finder_for
    from training.models.backbones import has_heads
    from training.models.calibration import calibrate

    bundle = load_bundle(args.model)
    if has_heads(bundle.model) and added_head_record(bundle.metadata.training) is None:
        raise ValueError(f"{args.model} has heads but its metadata does not say how they were made")
    joined = fit_head(args, bundle, finder_for(args.whole_image))
    head = joined.head
    bundle.model = add_heads(bundle.model, joined.heads, joined.offsets, zero=joined.zero)

    metadata = bundle.metadata
    before = added_head_record(metadata.training) or {}
    head_names = before.get("heads", ["generator"])
    # The first column is the generator head in the units of this model's logit: undoing this temperature
    # and those it was made with gives the trained network's own logit again (generator_head_only).
    generator_temperature = metadata.temperature * before.get("generator_temperature",
                                                                before.get("from", {}).get("temperature", 1.0))
    record = {
        "from": {"name": metadata.name, "version": metadata.version, "threshold": metadata.threshold,
                 "temperature": metadata.temperature, "training": metadata.training},
        "heads": [*head_names, args.head], "fake_sources": sorted(args.fake_source),
        "aligned": [str(folder) for folder in args.aligned], "views": args.view,
        "scored": "whole_image" if args.whole_image else "faces", "c": head.c, "c_tried": sorted(args.c),
        "valid_auc": {"mean": head.score, "clean": head.aucs[0], "laundered": head.aucs[1]},
        "train_images": joined.train_images, "excluded_sources": sorted(args.exclude_source),
        "head_fpr": args.head_fpr,
        "head_max_source_fpr": args.head_max_source_fpr, "head_slope": args.head_slope,
        "generator_zero_logit": joined.zero, "generator_temperature": generator_temperature,
        "head_spread": joined.spread,
    }
    metadata.name = args.name or metadata.name
    metadata.version = args.version or metadata.version
    metadata.temperature = 1.0
    metadata.metrics = {}
    metadata.training = {"command": args.command, "add_head": record}
    calibrate(bundle, list_split(args.data_dir, "valid"), **cli.calibration_options(args))
    path = save_bundle(bundle, args.out, overwrite=True)
    print(f"wrote {path}: heads {', '.join(record['heads'])}; C={head.c:g}, valid AUC {head.score:.4f}; temperature "
          f"{metadata.temperature:.3f}, threshold {metadata.threshold:.4f}", file=sys.stderr)
    return path


def main(argv: list[str] | None = None) -> int:
    return cli.run_bundle_command(fit, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
