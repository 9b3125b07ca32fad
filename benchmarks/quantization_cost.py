"""What quantizing the extension's model costs in probability.

    python benchmarks/quantization_cost.py MODEL [--data ../shared/data] [--limit N]
        [--quantize none float16 uint8]

Converts MODEL (a bundle: NAME.keras + NAME.json) once per quantization with
training.export_tfjs, runs each conversion in node on TF.js's WebAssembly
backend (the extension's runtime; extension/test/predict.mjs) over the
test split, and prints max / mean |p_tfjs - p_keras| and the model's
download size. Preprocessing is done once in Python: the extension's
JavaScript mirror is bit-for-bit identical (tests/test_extension_preprocess.py),
so only the model's arithmetic differs. Needs `bash .ci/setup --test`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from aiface.bundle import load_bundle  # noqa: E402
from aiface.preprocess import ImageError, preprocess  # noqa: E402
from training.data.layout import list_split  # noqa: E402
from training.export_tfjs import QUANTIZATIONS, export_tfjs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PREDICT_JS = ROOT / "extension" / "test" / "predict.mjs"
# The budget: the shipped model's probabilities stay within this of Keras.
BUDGET = 0.01


def sample(examples: list, limit: int | None) -> list:
    """Every k-th example, so that a limited run still spans sources and labels."""
    if limit is None or limit >= len(examples):
        return examples
    step = len(examples) / limit
    return [examples[int(i * step)] for i in range(limit)]


def model_inputs(examples: list, size: int) -> np.ndarray:
    inputs = []
    for example in examples:
        try:
            inputs.append(preprocess(example.path, size))
        except ImageError as error:
            print(f"skipping {example.path}: {error}", file=sys.stderr)
    return np.stack(inputs)


def tfjs_probabilities(model_dir: Path, inputs_file: Path, size: int) -> np.ndarray:
    node = shutil.which("node")
    if node is None:
        sys.exit("error: node is not installed; run bash .ci/setup --test")
    result = subprocess.run(
        [node, str(PREDICT_JS), str(model_dir), str(inputs_file), str(size)],
        cwd=PREDICT_JS.parent.parent, capture_output=True, text=True, check=True,
    )
    return np.asarray(json.loads(result.stdout)["probabilities"], dtype=np.float64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the .keras bundle to convert")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="data folder (140k layout)")
    parser.add_argument("--limit", type=int, help="at most this many test images, spread over the split")
    parser.add_argument("--quantize", nargs="+", default=list(QUANTIZATIONS), choices=tuple(QUANTIZATIONS))
    args = parser.parse_args(argv)

    bundle = load_bundle(args.model)
    size = bundle.metadata.image_size
    examples = sample(list_split(args.data, "test"), args.limit)
    started = time.perf_counter()
    inputs = model_inputs(examples, size)
    keras_p = bundle.predict_fake(inputs)
    print(f"{bundle.metadata.name} {bundle.metadata.version} ({bundle.metadata.backbone}, {size} px) "
          f"on {len(inputs)} test images of {args.data}; Keras and preprocessing took "
          f"{time.perf_counter() - started:.0f} s")
    print(f"{'quantization':<13}{'model size':>12}{'max |dp|':>11}{'mean |dp|':>11}"
          f"{'label flips':>13}  within {BUDGET}")
    with tempfile.TemporaryDirectory() as work:
        inputs_file = Path(work) / "inputs.f32"
        inputs.astype("<f4").tofile(inputs_file)
        for quantization in args.quantize:
            out_dir = export_tfjs(args.model, Path(work) / quantization, quantize=quantization)
            tfjs_p = tfjs_probabilities(out_dir, inputs_file, size)
            difference = np.abs(tfjs_p - keras_p)
            threshold = bundle.metadata.threshold
            flips = int(np.sum((tfjs_p >= threshold) != (keras_p >= threshold)))
            kib = sum(p.stat().st_size for p in out_dir.iterdir()) / 1024
            print(f"{quantization:<13}{kib:>9.0f} KiB{difference.max():>11.5f}{difference.mean():>11.6f}"
                  f"{flips:>13}  {'yes' if difference.max() <= BUDGET else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
