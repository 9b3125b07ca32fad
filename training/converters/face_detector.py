"""Convert face-api's tiny face detector once, for both runtimes.

    python -m training.converters.face_detector [--face-api extension/node_modules/@vladmandic/face-api]

The source is the npm package ``@vladmandic/face-api`` 1.7.15 (MIT), which
ships the weights as ``model/tiny_face_detector_model.bin`` (uint8, one
``min`` and ``scale`` per tensor in the manifest beside it). Writes

- ``aiface/weights/tiny_face_detector.npz``: the same uint8 values, with each
  tensor's ``min`` and ``scale``, for the service (``aiface.faces``); its
  SHA-256 is printed, to be pinned as ``aiface.faces.WEIGHTS_SHA256``;
- ``extension/faces/``: the Keras network of ``aiface.faces.build_detector``
  with those weights as a TF.js graph model (Keras -> SavedModel -> graph
  model, the classifier's path, unquantized so that the browser runs the
  same float32 weights), and ``faces.json``, ``aiface.faces.face_config()``:
  every constant the extension's face finding reads.

Refuses to write when the Keras network's output differs from a NumPy
reference of face-api's forward pass (``reference_forward``) by more than
1e-4 on a test image. ``tests/test_faces.py`` checks face-api's own TF.js
forward pass against the committed weights in node.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from aiface import faces  # noqa: E402
from training.data.staging import staged_folder  # noqa: E402
from training.export_tfjs import _converter, check_wasm_compatible  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent.parent
FACE_API = ROOT / "extension" / "node_modules" / "@vladmandic" / "face-api"
MANIFEST = "model/tiny_face_detector_model-weights_manifest.json"
EXTENSION_FACES = ROOT / "extension" / "faces"
WEIGHTS_OUT = ROOT / "aiface" / "weights" / faces.WEIGHTS_FILE


def read_face_api(package: Path) -> dict[str, tuple[np.ndarray, float, float]]:
    """face-api's weights by name: (uint8 values shaped as the tensor, scale, min)."""
    manifest = json.loads((package / MANIFEST).read_text())
    [group] = manifest
    data = b"".join((package / "model" / path).read_bytes() for path in group["paths"])
    out, offset = {}, 0
    for spec in group["weights"]:
        quantization = spec["quantization"]
        if quantization["dtype"] != "uint8" or spec["dtype"] != "float32":
            raise ValueError(f"{spec['name']}: expected float32 weights quantized to uint8")
        size = int(np.prod(spec["shape"]))
        values = np.frombuffer(data, np.uint8, size, offset).reshape(spec["shape"])
        out[spec["name"]] = (values.copy(), float(quantization["scale"]), float(quantization["min"]))
        offset += size
    if offset != len(data):
        raise ValueError(f"the manifest describes {offset} bytes, the weights file has {len(data)}")
    return out


def npz_bytes(quantized: dict[str, tuple[np.ndarray, float, float]]) -> bytes:
    arrays = {}
    for name, (values, scale, minimum) in quantized.items():
        key = name.replace("/", ".")
        arrays[f"{key}.q"] = values
        arrays[f"{key}.scale"] = np.float64(scale)
        arrays[f"{key}.min"] = np.float64(minimum)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def reference_forward(weights: dict[str, np.ndarray], image: np.ndarray) -> np.ndarray:
    """face-api's runMobilenet written out in NumPy (float64), for one (416, 416, 3) input in [0, 255]."""

    def conv(x, kernel, bias, pad):
        if pad:
            x = np.pad(x, ((1, 1), (1, 1), (0, 0)))
        k = kernel.shape[0]
        h, w = x.shape[0] - k + 1, x.shape[1] - k + 1
        out = np.zeros((h, w, kernel.shape[3]))
        for dy in range(k):
            for dx in range(k):
                out += x[dy : dy + h, dx : dx + w] @ kernel[dy, dx]
        return out + bias

    def depthwise(x, kernel):
        x = np.pad(x, ((1, 1), (1, 1), (0, 0)))
        h, w = x.shape[0] - 2, x.shape[1] - 2
        return sum(x[dy : dy + h, dx : dx + w] * kernel[dy, dx, :, 0] for dy in range(3) for dx in range(3))

    def leaky(x):
        return np.where(x > 0, x, 0.1 * x)

    def pool(x, stride):
        h, w = -(-x.shape[0] // stride), -(-x.shape[1] // stride)
        padded = np.pad(x, ((0, (h - 1) * stride + 2 - x.shape[0]), (0, (w - 1) * stride + 2 - x.shape[1]), (0, 0)),
                        constant_values=-np.inf)
        return np.max([padded[dy : dy + (h - 1) * stride + 1 : stride, dx : dx + (w - 1) * stride + 1 : stride]
                       for dy in range(2) for dx in range(2)], axis=0)

    w = {name: value.astype(np.float64) for name, value in weights.items()}
    x = (image.astype(np.float64) - np.asarray(faces.MEAN_RGB)) / 255.0
    x = pool(leaky(conv(x, w["conv0/filters"], w["conv0/bias"], pad=False)), 2)
    for index in range(1, 6):
        name = f"conv{index}"
        x = depthwise(x, w[f"{name}/depthwise_filter"])
        x = leaky(conv(x, w[f"{name}/pointwise_filter"], w[f"{name}/bias"], pad=False))
        x = pool(x, 1 if index == 5 else 2)
    return conv(x, w["conv8/filters"], w["conv8/bias"], pad=False)


def reference_input() -> np.ndarray:
    """A detector input with a face in it: tests/data/astronaut_face.jpg, placed as for a search."""
    from PIL import Image

    pixels = np.asarray(Image.open(ROOT / "tests" / "data" / "astronaut_face.jpg").convert("RGB"))
    place = faces.placement(pixels.shape[1], pixels.shape[0], border=True)
    return faces.detector_input(pixels, place)


def export_graph_model(model, out_dir: Path) -> None:
    converter = _converter()
    with staged_folder(out_dir) as staged:
        saved_model = staged.parent / "saved_model"
        model.export(str(saved_model), format="tf_saved_model", verbose=False)
        converter.convert_tf_saved_model(str(saved_model), str(staged), quantization_dtype_map=None,
                                         weight_shard_size_bytes=64 * 1024 * 1024)
        check_wasm_compatible(json.loads((staged / "model.json").read_text()))
        (staged / "faces.json").write_text(json.dumps(faces.face_config(), indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.converters.face_detector", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--face-api", type=Path, default=FACE_API, help="the installed @vladmandic/face-api package")
    parser.add_argument("--weights-out", type=Path, default=WEIGHTS_OUT)
    parser.add_argument("--extension-out", type=Path, default=EXTENSION_FACES)
    args = parser.parse_args(argv)

    data = npz_bytes(read_face_api(args.face_api))
    args.weights_out.parent.mkdir(parents=True, exist_ok=True)
    staged = args.weights_out.with_suffix(".npz.tmp")
    staged.write_bytes(data)
    weights = faces.load_weights(staged)
    model = faces.build_detector(weights)
    image = reference_input()
    keras_output = np.asarray(model(image[None], training=False))[0]
    difference = float(np.max(np.abs(keras_output - reference_forward(weights, image))))
    if difference > 1e-4:
        staged.unlink()
        print(f"error: the Keras network differs from face-api's forward pass by {difference:.2g}", file=sys.stderr)
        return 1
    staged.replace(args.weights_out)
    export_graph_model(model, args.extension_out)
    print(f"wrote {args.weights_out} (SHA-256 {hashlib.sha256(data).hexdigest()}; Keras vs reference "
          f"{difference:.1e}) and {args.extension_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
