"""extension/src/preprocess.js computes the same model input as aiface.preprocess, bit for bit."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from aiface.preprocess import composite_on_white, to_model_input

pytestmark = pytest.mark.process  # node

PREPROCESS_JS = Path(__file__).resolve().parent.parent / "extension" / "src" / "preprocess.js"
# Reads RGBA bytes from stdin, writes the float32 model input to stdout.
DRIVER = """
import { toModelInput } from %r;
const [width, height, size] = process.argv.slice(1).map(Number);
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = toModelInput(new Uint8Array(Buffer.concat(chunks)), width, height, size);
process.stdout.write(Buffer.from(input.buffer));
"""


def js_model_input(rgba: np.ndarray, size: int) -> np.ndarray:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (bash .ci/setup --test installs what the tests need)")
    height, width = rgba.shape[:2]
    result = subprocess.run(
        [node, "--input-type=module", "-e", DRIVER % PREPROCESS_JS.as_uri(), "--", str(width), str(height), str(size)],
        input=rgba.tobytes(), capture_output=True, check=True, timeout=60,
    )
    return np.frombuffer(result.stdout, dtype=np.float32).reshape(size, size, 3)


@pytest.mark.parametrize(
    "height, width, size",
    [(187, 301, 64), (301, 187, 224), (45, 60, 100), (96, 96, 96), (96, 130, 96)],
    ids=["shrink-wide", "shrink-tall-224", "enlarge", "same-size", "same-side-wide"],
)
def test_js_preprocessing_matches_python_bit_for_bit(height, width, size):
    rng = np.random.default_rng(height * width + size)
    rgba = rng.integers(0, 256, size=(height, width, 4), dtype=np.uint8)
    rgba[: height // 2, :, 3] = 255  # half opaque, half translucent

    expected = to_model_input(composite_on_white(rgba), size)
    actual = js_model_input(rgba, size)

    assert actual.dtype == expected.dtype == np.float32
    assert actual.tobytes() == expected.tobytes()
