"""extension/src/crop.js frames a face exactly as aiface.faces.crop_box does."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from aiface.faces import Box, crop_box

CROP_JS = Path(__file__).resolve().parent.parent / "extension" / "src" / "crop.js"
# Reads [[face, width, height], ...] as JSON from stdin, writes the crops.
DRIVER = """
import { cropBox } from %r;
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const cases = JSON.parse(Buffer.concat(chunks).toString());
process.stdout.write(JSON.stringify(cases.map(([face, width, height]) => cropBox(face, width, height))));
"""


def js_crop_boxes(cases: list) -> list[dict]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (bash .ci/setup --test installs what the tests need)")
    result = subprocess.run(
        [node, "--input-type=module", "-e", DRIVER % CROP_JS.as_uri()],
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
