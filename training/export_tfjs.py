"""Convert a model bundle to a TF.js graph model for the browser extension.

    python -m training.export_tfjs MODEL OUT_DIR [--quantize none|float16|uint8] [--overwrite]

Keras 3 "layers" models do not load in TF.js 4.22, so the model goes
Keras -> SavedModel -> TF.js graph model. BatchNorm is folded into the
convolutions first (``training.models.fold_batchnorm``), which is what lets the
graph run in the WASM backend. ``metadata.json`` beside ``model.json``
carries what the extension needs to feed and read the model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from aiface.bundle import Bundle, ModelLoadError, load_bundle
from aiface.quiet import quiet_tensorflow
from training.cli import fail
from training.data.staging import staged_folder

QUANTIZATIONS = {
    "none": None,
    "float16": {"float16": "*"},
    "uint8": {"uint8": "*"},
    # float16, but one byte for EfficientNet-Lite0's two largest kernels (0.78 M of its 3.4 M weights),
    # the 1x1 convolutions of its last stage: they feed only the second-order head's mean and std, not
    # the covariances, so their error reaches the output weakly. Other bases: plain float16.
    "mixed": {"uint8": ["*conv_head*", "*blocks_15_project_conv*"], "float16": True},
}
# Half of float32's size, and within 0.01 of Keras; uint8 (one scale per
# tensor in TF.js) moved probabilities by up to 0.5, probably because kernels
# with BatchNorm folded in span very different ranges per channel. Measured
# by benchmarks/quantization_cost.py (benchmarks/README.md).
DEFAULT_QUANTIZATION = "float16"
# Everything the converter and this module write; --overwrite replaces a
# folder holding only these, never anything else.
OUTPUT_FILES = ("model.json", "metadata.json", "group*-shard*of*.bin")
FUSED_CONV_OPS = ("_FusedConv2D", "FusedDepthwiseConv2dNative")


class ExportError(RuntimeError):
    """An export that cannot be done; the message says why."""


def _converter():
    # Also turns off the advertisement TF Decision Forests (imported by
    # tensorflowjs) would print on stdout.
    quiet_tensorflow()
    from tensorflowjs.converters import tf_saved_model_conversion_v2

    return tf_saved_model_conversion_v2


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a folder")
    contents = list(out_dir.iterdir())
    if not contents:
        return
    if not overwrite:
        raise ExportError(f"{out_dir} already exists; pass --overwrite to replace it")
    strangers = [p.name for p in contents if not any(p.match(pattern) for pattern in OUTPUT_FILES)]
    if strangers:
        raise ExportError(
            f"{out_dir} holds files that are not an exported model ({', '.join(sorted(strangers)[:3])}); "
            "refusing to replace it"
        )


def check_wasm_compatible(model_json: dict) -> None:
    """Refuse a graph whose fused convolutions carry a bias of rank > 1 (see fold_batchnorm)."""
    shapes = {
        weight["name"]: weight["shape"]
        for group in model_json["weightsManifest"]
        for weight in group["weights"]
    }
    for node in model_json["modelTopology"]["node"]:
        if node["op"] in FUSED_CONV_OPS and len(node["input"]) > 2:
            bias_shape = shapes.get(node["input"][2].split(":")[0])
            if bias_shape is not None and len(bias_shape) != 1:
                raise ExportError(
                    f"converted node {node['name']} has a bias of shape {bias_shape}; "
                    "the WASM backend only runs rank-1 biases"
                )


def tfjs_metadata(bundle: Bundle, quantization: str) -> dict:
    meta = bundle.metadata
    return {
        "name": meta.name,
        "version": meta.version,
        "backbone": meta.backbone,
        "image_size": meta.image_size,
        "preprocessing": meta.preprocessing,
        "class_names": list(meta.class_names),
        "temperature": meta.temperature,
        "threshold": meta.threshold,
        "quantization": quantization,
    }


def export_tfjs(model_path: str | Path, out_dir: str | Path, quantize: str = DEFAULT_QUANTIZATION,
                overwrite: bool = False, progress: bool = False) -> Path:
    """Write ``model.json``, its weight shards and ``metadata.json`` into ``out_dir``.

    ``progress``: a bar on stderr through the export's four steps after loading.
    """
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantize!r}; choose one of: {', '.join(QUANTIZATIONS)}")
    out_dir = Path(out_dir)
    check_out_dir(out_dir, overwrite)
    bundle = load_bundle(model_path)
    from training.models.fold_batchnorm import FoldError, fold_batchnorm, verify_folded  # Keras, loaded by now

    with tqdm(total=4, desc="export", unit="step", file=sys.stderr, disable=not progress) as bar:
        bar.set_postfix_str("fold BatchNorm")
        folded = fold_batchnorm(bundle.model)
        bar.update()
        bar.set_postfix_str("verify the fold")
        try:
            verify_folded(bundle.model, folded)
        except FoldError as error:
            raise ExportError(str(error)) from error
        bar.update()
        converter = _converter()
        with staged_folder(out_dir) as staged:
            bar.set_postfix_str("SavedModel")
            saved_model = staged.parent / "saved_model"
            folded.export(str(saved_model), format="tf_saved_model", verbose=False)
            bar.update()
            bar.set_postfix_str("TF.js")
            converter.convert_tf_saved_model(
                str(saved_model),
                str(staged),
                quantization_dtype_map=QUANTIZATIONS[quantize],
                # One shard: the extension loads it from its own package, where
                # fewer, larger files are faster than the default 4 MB pieces.
                weight_shard_size_bytes=64 * 1024 * 1024,
            )
            check_wasm_compatible(json.loads((staged / "model.json").read_text()))
            (staged / "metadata.json").write_text(json.dumps(tfjs_metadata(bundle, quantize), indent=2) + "\n")
            bar.update()
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.export_tfjs",
        description="Convert a model bundle (NAME.keras + NAME.json) to a TF.js graph model for the extension.",
    )
    parser.add_argument("model", help="the .keras file (its .json metadata beside it) or a folder holding one")
    parser.add_argument("out_dir", help="folder to write model.json, weights and metadata.json into")
    parser.add_argument("--quantize", choices=tuple(QUANTIZATIONS), default=DEFAULT_QUANTIZATION,
                        help=f"weight quantization (default {DEFAULT_QUANTIZATION})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing exported model in OUT_DIR")
    args = parser.parse_args(argv)
    try:
        out_dir = export_tfjs(args.model, args.out_dir, args.quantize, args.overwrite, progress=True)
    except (ExportError, ModelLoadError) as error:
        return fail(error)
    size = sum(p.stat().st_size for p in out_dir.iterdir())
    print(f"wrote {out_dir} ({args.quantize}, {size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
