"""Fine-tune a classifier on a folder in the 140k layout.

    python -m training.train DATA_DIR --backbone efficientnet_lite0 \\
        --image-size 224 --epochs 5 --batch-size 32 --out runs/lite0

With pretrained weights, two phases after keras-io's transfer-learning
guide: ``--head-epochs`` with the base frozen, then the top ``--unfreeze``
fraction of the base trained at ``--fine-tune-lr``, BatchNorm staying in
inference mode throughout. From scratch (no base weights; see ``--weights``) every layer,
BatchNorm included, trains from the first epoch. A checkpoint
(weights and optimizer state) is written after every epoch; ``--resume``
continues an interrupted run from it. At the end the model is calibrated on
``valid`` (temperature, and the threshold for ``--target-fpr`` false
positives on real faces) and written as ``RUN_DIR/model.keras`` + ``.json``.
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

# Skipping unreadable files leaves the epoch length unknown to Keras, which
# then warns at the end of every epoch that the data "ran out"; and the
# tf.data pipeline shuffles itself, which Keras also warns about.
warnings.filterwarnings("ignore", message="Your input ran out of data")
warnings.filterwarnings("ignore", message="`shuffle=True` was passed")

from training import backbones  # noqa: E402
from aiface.bundle import Bundle, Metadata, ModelLoadError, save_bundle  # noqa: E402
from training.calibration import calibrate  # noqa: E402
from training.augment import AugmentConfig  # noqa: E402
from training.distribute import STRATEGIES, make_strategy  # noqa: E402
from training.data import SkipLog, class_weights, make_dataset  # noqa: E402
from training.layout import Example, LayoutError, find_root, list_split, sources_table  # noqa: E402

CHECKPOINT = "checkpoint.keras"
STATE = "state.json"
HISTORY = "history.csv"
MODEL = "model.keras"
RUN_FILES = (CHECKPOINT, STATE, HISTORY, MODEL, "model.json")
# Settings a resumed run takes from the interrupted one rather than the command line.
RESUMED_SETTINGS = (
    "backbone", "image_size", "batch_size", "head_epochs", "lr", "fine_tune_lr",
    "unfreeze", "weights", "seed", "augment", "exclude_source", "repeat_source", "target_fpr", "name", "version",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", help="folder in the 140k layout ({train,valid,test}/{real,fake})")
    parser.add_argument("--out", required=True, help="run folder for checkpoints and the final model")
    parser.add_argument("--backbone", default="efficientnet_lite0", help=f"one of {', '.join(backbones.BACKBONES)}")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=5, help="total epochs, head phase included")
    parser.add_argument("--head-epochs", type=int, default=1, help="epochs with the base frozen (none when training from scratch)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of the head phase")
    parser.add_argument("--fine-tune-lr", type=float, default=1e-4)
    parser.add_argument("--unfreeze", type=float, default=1.0, help="fraction of the base's top layers to fine-tune")
    parser.add_argument(
        "--weights",
        default="auto",
        help="'imagenet', 'none', or a base weights file; 'auto' is the committed ImageNet "
        "weights for efficientnet_lite0 and none otherwise ('imagenet' for resnet50 downloads)",
    )
    parser.add_argument("--no-augment", dest="augment", action="store_false")
    parser.add_argument("--exclude-source", action="append", default=[], help="leave a source out of train and valid")
    parser.add_argument(
        "--repeat-source",
        action="append",
        default=[],
        type=source_repeat,
        metavar="SOURCE=K",
        help="show a source's training images K times an epoch, e.g. to weight the one "
        "source whose real and fake share a pipeline above the easy ones",
    )
    parser.add_argument("--target-fpr", type=float, default=0.01, help="false-positive rate on real faces for the threshold")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="aiface")
    parser.add_argument("--version", default="0.1.0")
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="default",
        help="tf.distribute strategy: one device, all local devices, or the workers in TF_CONFIG",
    )
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run's files in --out")
    return parser.parse_args(argv)


def resolve_weights(backbone: str, weights: str) -> str | None:
    if weights == "auto":
        return "imagenet" if backbone == "efficientnet_lite0" else None
    return None if weights == "none" else weights


def source_repeat(text: str) -> list:
    source, _, count = text.partition("=")
    if not source or not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"expected SOURCE=K with K a positive integer, not {text!r}")
    return [source, int(count)]


def repeat_sources(examples: list[Example], repeats: list) -> list[Example]:
    counts = dict(repeats)
    unknown = set(counts) - {example.source for example in examples}
    if unknown:
        raise LayoutError(f"--repeat-source names source(s) not in train: {', '.join(sorted(unknown))}")
    return [example for example in examples for _ in range(counts.get(example.source, 1))]


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
            setattr(args, key, saved[key])
        return out
    if existing and not args.overwrite:
        raise FileExistsError(f"{out} already holds a run ({', '.join(existing)}); use --resume or --overwrite")
    for name in existing:
        (out / name).unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


class Checkpoint(keras.callbacks.Callback):
    """After each epoch: model and optimizer state, then the epoch count, each written atomically."""

    def __init__(self, out: Path, settings: dict, skips: SkipLog):
        super().__init__()
        self.out, self.settings, self.skips = out, settings, skips

    def on_epoch_end(self, epoch, logs=None):
        partial = self.out / ("partial-" + CHECKPOINT)
        self.model.save(partial)
        os.replace(partial, self.out / CHECKPOINT)
        state = {"epoch": epoch + 1, "settings": self.settings, "skipped": self.skips.skipped}
        (self.out / (STATE + ".partial")).write_text(json.dumps(state, indent=2))
        os.replace(self.out / (STATE + ".partial"), self.out / STATE)
        self.skips.report()


def compile_for(model: keras.Model, learning_rate: float) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def train(args: argparse.Namespace) -> Path:
    out = prepare_run_dir(args)
    backbones.get_backbone(args.backbone)
    excluded = set(args.exclude_source)
    train_examples = repeat_sources(
        [e for e in list_split(args.data_dir, "train") if e.source not in excluded], args.repeat_source
    )
    valid_examples = [e for e in list_split(args.data_dir, "valid") if e.source not in excluded]
    settings = {key: getattr(args, key) for key in RESUMED_SETTINGS}
    skips = SkipLog()
    train_data = make_dataset(
        train_examples, args.image_size, args.batch_size, training=True, skips=skips,
        seed=args.seed, augment_config=AugmentConfig() if args.augment else None,
    )
    valid_data = make_dataset(valid_examples, args.image_size, args.batch_size, training=False, skips=skips)
    weights = class_weights(train_examples)
    strategy = make_strategy(args.strategy)
    print(
        f"training {args.backbone} at {args.image_size} px on {len(train_examples)} images "
        f"(class weights {weights}), validating on {len(valid_examples)}, "
        f"{strategy.num_replicas_in_sync} replica(s)",
        file=sys.stderr,
    )

    weights_source = resolve_weights(args.backbone, args.weights)
    # From scratch there is no base worth freezing: every layer, BatchNorm
    # included, trains from the first epoch.
    scratch = weights_source is None
    head_epochs = 0 if scratch else args.head_epochs
    start = 0
    with strategy.scope():
        if args.resume:
            start = json.loads((out / STATE).read_text())["epoch"]
            model = keras.models.load_model(out / CHECKPOINT)
            print(f"resuming after epoch {start} from {out / CHECKPOINT}", file=sys.stderr)
        else:
            keras.utils.set_random_seed(args.seed)
            model = backbones.build_model(args.backbone, args.image_size, weights_source, train_batchnorm=scratch)
            # A fresh model is trainable throughout, as training from scratch needs.
            if not scratch:
                backbones.freeze_base(model)
            compile_for(model, args.lr)

    callbacks = [Checkpoint(out, settings, skips), keras.callbacks.CSVLogger(out / HISTORY, append=True)]
    # A progress bar on a terminal, one line per epoch in a log file.
    verbose = 1 if sys.stdout.isatty() else 2
    fit = dict(validation_data=valid_data, class_weight=weights, callbacks=callbacks, verbose=verbose)
    if start < head_epochs:
        model.fit(train_data, epochs=head_epochs, initial_epoch=start, **fit)
        start = head_epochs
    if start < args.epochs:
        # A run resumed inside the fine-tuning phase has its base unfrozen and its optimizer state already.
        if not any(layer.trainable for layer in backbones.base_of(model).layers):
            with strategy.scope():
                backbones.unfreeze_top(model, args.unfreeze)
                compile_for(model, args.fine_tune_lr)
        model.fit(train_data, epochs=args.epochs, initial_epoch=start, **fit)

    # A fresh copy without optimizer state keeps the shipped file small.
    final = backbones.build_model(args.backbone, args.image_size, weights=None, train_batchnorm=scratch)
    final.set_weights(model.get_weights())
    metadata = Metadata(
        backbone=args.backbone,
        image_size=args.image_size,
        name=args.name,
        version=args.version,
        training={
            "command": "python -m training.train " + shlex.join(sys.argv[1:]),
            "settings": settings,
            "epochs": args.epochs,
            "train_images": len(train_examples),
            "sources_csv_sha256": sources_digest(args.data_dir),
            "skipped_files": sorted(skips.skipped),
        },
    )
    bundle = Bundle(final, metadata)
    calibrate(bundle, valid_examples, target_fpr=args.target_fpr)
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
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
