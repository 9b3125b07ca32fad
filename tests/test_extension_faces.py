"""The extension's face finding, run in node, gives what aiface.faces gives.

crop.js frames a face exactly as ``crop_box`` does, and chooses between the
crop and the whole square exactly as ``scored_box``; the converted graph model
(extension/faces/) gives the Keras port's output, and face-api's own TF.js
forward pass gives it too; faces.js finds the boxes ``FaceFinder`` finds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from aiface.faces import (
    FILL_FRACTION,
    Box,
    crop_box,
    decode,
    default_finder,
    fills_frame,
    iou,
    non_max_suppression,
    scored_box,
    whole_image_box,
)
from helpers import EXTENSION, FACE, face_filling, face_like, scene, two_faces_scene
from training.converters.face_detector import reference_input

pytestmark = pytest.mark.process  # node

CROP_JS = EXTENSION / "src" / "crop.js"
# float32 sums in another order (TF on the CPU here, TF.js on WebAssembly in node).
OUTPUT_TOLERANCE = 1e-4
# Reads [[face, width, height], ...] as JSON from stdin, writes the crops, or
# with "scored" as its argument [scoredBox, fillsFrame(cropBox), wholeImageBox] of each.
DRIVER = """
import { cropBox, fillsFrame, scoredBox, wholeImageBox } from %r;
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const cases = JSON.parse(Buffer.concat(chunks).toString());
const scored = process.argv.includes('scored');
const answer = ([face, width, height]) => (scored
  ? [scoredBox(face, width, height), fillsFrame(cropBox(face, width, height), width, height),
    wholeImageBox(width, height)]
  : cropBox(face, width, height));
process.stdout.write(JSON.stringify(cases.map(answer)));
"""


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (bash .ci/setup --test installs what the tests need)")
    if not (EXTENSION / "node_modules" / "@tensorflow" / "tfjs-core").is_dir():
        pytest.skip("the extension's npm packages are not installed (bash .ci/setup --test)")
    return node


def js_crop_boxes(cases: list, *args: str) -> list:
    node = _node()
    result = subprocess.run(
        [node, "--input-type=module", "-e", DRIVER % CROP_JS.as_uri(), "--", *args],
        input=json.dumps(cases), capture_output=True, text=True, check=True, timeout=60,
    )
    return json.loads(result.stdout)


def test_js_crop_box_matches_python_on_every_case():
    rng = np.random.default_rng(7)
    cases = []
    for _ in range(3000):
        width, height = (int(v) for v in rng.integers(40, 1200, 2))
        w, h = int(rng.integers(1, width + 1)), int(rng.integers(1, height + 1))
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        cases.append([{"x": x, "y": y, "width": w, "height": h}, width, height])
    # A left edge at 6.5, where Python's round() goes to the even side (about
    # half the random cases have such a tie too); a face wider than the image.
    cases += [[{"x": 11, "y": 40, "width": 22, "height": 22}, 200, 200],
              [{"x": 0, "y": 0, "width": 150, "height": 90}, 160, 100]]
    expected = [crop_box(Box(**face), width, height).to_json() for face, width, height in cases]
    assert js_crop_boxes(cases) == expected


def test_js_scored_box_matches_python_on_every_case():
    """The face-filling rule: the same choice and the same box, on random faces, many of them near the limit."""
    rng = np.random.default_rng(11)
    cases = []
    for index in range(4000):
        width, height = (int(v) for v in rng.integers(40, 1600, 2))
        if index % 2:  # near the limit: a crop about FILL_FRACTION of the shorter side
            side = max(1, round(rng.uniform(FILL_FRACTION - 0.08, FILL_FRACTION + 0.08) * 0.72 * min(width, height)))
            w, h = int(rng.integers(max(1, side // 2), side + 1)), side
            if rng.integers(2):
                w, h = h, w
            w, h = min(w, width), min(h, height)
        else:
            w, h = int(rng.integers(1, width + 1)), int(rng.integers(1, height + 1))
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        cases.append([{"x": x, "y": y, "width": w, "height": h}, width, height])
    # A 256 px face-filling image (the whole square), the same face in a large scene (its crop), a
    # panorama's end (its crop) and its middle (the centred square).
    cases += [[{"x": 56, "y": 60, "width": 144, "height": 144}, 256, 256],
              [{"x": 456, "y": 360, "width": 144, "height": 144}, 1024, 1024],
              [{"x": 20, "y": 60, "width": 300, "height": 380}, 2000, 500],
              [{"x": 850, "y": 60, "width": 300, "height": 380}, 2000, 500]]
    expected = []
    for face, width, height in cases:
        box = Box(**face)
        fills = fills_frame(crop_box(box, width, height), width, height)
        expected.append([scored_box(box, width, height).to_json(), fills, whole_image_box(width, height).to_json()])
    assert js_crop_boxes(cases, "scored") == expected
    chosen = [fills for _, fills, _ in expected]
    assert 0.2 * len(cases) < sum(chosen) < 0.8 * len(cases), "the cases should test both sides of the rule"
    assert chosen[-4:] == [True, False, False, True]


def run_node(script: str, *args: str) -> dict:
    result = subprocess.run([_node(), f"test/{script}", *args], cwd=EXTENSION, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _inputs(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """Two detector inputs: the astronaut placed for the border pass, and a scene placed for the first."""
    from aiface.faces import detector_input, placement

    pixels = scene()
    inputs = np.stack([reference_input(), detector_input(pixels, placement(640, 480, border=False))])
    path = tmp_path / "inputs.f32"
    inputs.astype("<f4").tofile(path)
    return path, inputs


def test_converted_graph_model_gives_the_keras_output(tmp_path):
    path, inputs = _inputs(tmp_path)
    outputs = run_node("faces.mjs", str(_request(tmp_path, [], {"path": str(path), "count": len(inputs)})))["outputs"]
    finder = default_finder()
    for image, output in zip(inputs, outputs, strict=True):
        expected = finder.output(image)
        np.testing.assert_allclose(np.reshape(output, expected.shape), expected, atol=OUTPUT_TOLERANCE)


@pytest.mark.slow  # bundles face-api with esbuild and runs it on TF.js's CPU backend: about 10 s
def test_face_apis_own_forward_pass_gives_the_keras_ports_output_and_boxes(tmp_path):
    """face-api 1.7.15 itself (test/face_api.mjs, on TF.js's CPU backend) against aiface.faces."""
    path, inputs = _inputs(tmp_path)
    reference = run_node("face_api.mjs", str(path), str(len(inputs)))
    finder = default_finder()
    for image, output, boxes in zip(inputs, reference["outputs"], reference["boxes"], strict=True):
        ours = finder.output(image)
        np.testing.assert_allclose(np.reshape(output, ours.shape), ours, atol=OUTPUT_TOLERANCE)
        kept = non_max_suppression(decode(ours))
        assert len(kept) == len(boxes) > 0
        for (score, box), theirs in zip(kept, boxes, strict=True):
            assert score == pytest.approx(theirs["score"], abs=1e-4)
            np.testing.assert_allclose(box, [theirs[key] for key in ("x", "y", "width", "height")], atol=0.05)


def _request(tmp_path: Path, images: list[np.ndarray], inputs: dict | None = None) -> Path:
    entries = []
    for index, pixels in enumerate(images):
        path = tmp_path / f"image{index}.rgb"
        np.ascontiguousarray(pixels, np.uint8).tofile(path)
        entries.append({"path": str(path), "width": int(pixels.shape[1]), "height": int(pixels.shape[0])})
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"images": entries, **({"inputs": inputs} if inputs else {})}))
    return request


def test_faces_js_finds_the_boxes_the_service_finds(tmp_path):
    from PIL import Image

    large = np.asarray(Image.fromarray(two_faces_scene()).resize((1600, 1000), Image.BICUBIC))
    images = [scene(), two_faces_scene(), FACE, face_filling(), face_like(5, size=256), large]
    found = run_node("faces.mjs", str(_request(tmp_path, images)))["faces"]
    finder = default_finder()
    counts = []
    for pixels, js in zip(images, found, strict=True):
        python = finder.find(pixels)
        counts.append(len(python))
        assert len(js) == len(python)
        for ours, theirs in zip(python, js, strict=True):
            assert iou(ours.box, Box(**theirs["box"])) >= 0.95
            assert theirs["score"] == pytest.approx(ours.score, abs=1e-4)
    assert counts == [1, 2, 1, 1, 0, 2], "the images should cover one, two, a plain, a face-filling and no face"
