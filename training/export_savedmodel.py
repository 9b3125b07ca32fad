"""Export a model bundle as a SavedModel that TensorFlow Serving loads.

    python -m training.export_savedmodel MODEL OUT_DIR [--version N] [--overwrite]

Writes ``OUT_DIR/N/`` (TF Serving's numbered version folder, 1 by default)
with one signature, ``serving_default``: input ``image``, float32
``[None, S, S, 3]`` with values in [0, 255] from ``aiface.preprocess``
(the network normalises its own input), output ``probabilities``
``[None, 2]`` = [P(real), P(fake)], already calibrated. ``OUT_DIR/metadata.json``
is the bundle's metadata (input size, threshold, names); TF Serving ignores
it, and the Flask service reads it with ``MODEL_BACKEND=tfserving``.

``training.export_tfjs`` also writes a SavedModel, but of the BatchNorm-folded
network with Keras's default tensor names, as a step towards TF.js; a
serving export needs stable names that clients can rely on, so it is made
here with ``keras.export.ExportArchive`` from the unmodified network.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from aiface.bundle import Bundle, ModelLoadError, load_bundle
from training.cli import fail
from training.data.staging import staged_folder

if TYPE_CHECKING:
    import keras

SIGNATURE = "serving_default"
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
METADATA_FILE = "metadata.json"


class ExportError(RuntimeError):
    """An export that cannot be done; the message says why."""


def _check_out_dir(out_dir: Path, version: int, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a folder")
    if (out_dir / str(version)).exists() and not overwrite:
        raise ExportError(f"{out_dir / str(version)} already exists; pass --overwrite to replace it")


def _archive(bundle: Bundle) -> keras.export.ExportArchive:
    import keras
    import tensorflow as tf

    model = bundle.model
    size = bundle.metadata.image_size

    def serve(image):
        return {OUTPUT_NAME: model(image, training=False)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SIGNATURE,
        fn=serve,
        input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32, name=INPUT_NAME)],
    )
    return archive


def export_savedmodel(
    model_path: str | Path, out_dir: str | Path, version: int = 1, overwrite: bool = False, progress: bool = False
) -> Path:
    """Write ``out_dir/version/`` (the SavedModel) and ``out_dir/metadata.json``; returns the version folder.

    ``progress``: a bar on stderr through the export's steps after loading.
    """
    if version < 1:
        raise ExportError(f"version must be a positive integer, got {version}")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, version, overwrite)
    target = out_dir / str(version)
    bundle = load_bundle(model_path)
    with tqdm(total=2, desc="export", unit="step", file=sys.stderr, disable=not progress) as bar:
        bar.set_postfix_str("SavedModel")
        with staged_folder(target) as staged:
            _archive(bundle).write_out(str(staged), verbose=False)
        bar.update()
        bar.set_postfix_str("metadata")
        (out_dir / METADATA_FILE).write_text(json.dumps(bundle.metadata.to_json(), indent=2) + "\n")
        bar.update()
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.export_savedmodel",
        description="Export a model bundle (NAME.keras + NAME.json) as a SavedModel for TensorFlow Serving.",
    )
    parser.add_argument("model", help="the .keras file (its .json metadata beside it) or a folder holding one")
    parser.add_argument("out_dir", help="TF Serving's model base path: the version folder and metadata.json go here")
    parser.add_argument("--version", type=int, default=1, help="version folder name (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version folder")
    args = parser.parse_args(argv)
    if args.version < 1:
        parser.error(f"--version must be a positive integer, got {args.version}")
    try:
        target = export_savedmodel(args.model, args.out_dir, args.version, args.overwrite, progress=True)
    except (ExportError, ModelLoadError) as error:
        return fail(error)
    metadata = Path(args.out_dir) / METADATA_FILE
    print(f"wrote {target} (signature {SIGNATURE}: {INPUT_NAME} -> {OUTPUT_NAME}) and {metadata}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
