"""extension/src/bytes.js refuses a file whose base64 would not fit in one extension message (Chromium: 64 MiB)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from helpers import REPO

SCRIPT = """
import { toBase64, MAX_ENCODED_FILE_BYTES } from './src/bytes.js';
const fake = (size) => ({ size, arrayBuffer: async () => new ArrayBuffer(size) });
const out = { limit: MAX_ENCODED_FILE_BYTES, small: await toBase64(new Blob([new Uint8Array([1, 2, 3])])) };
out.at_limit = (await toBase64(fake(MAX_ENCODED_FILE_BYTES))).length;
try { await toBase64(fake(50 * 1024 * 1024)); } catch (error) { out.code = error.code; out.message = error.message; }
console.log(JSON.stringify(out));
"""


@pytest.mark.process
def test_a_file_near_the_download_cap_is_too_large_not_a_dropped_message():
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    result = subprocess.run(["node", "--input-type=module", "-e", SCRIPT], cwd=REPO / "extension",
                            capture_output=True, text=True, timeout=120, check=True)
    out = json.loads(result.stdout)
    assert out["small"] == "AQID"
    # The largest file accepted still leaves 8 MiB of the 64 MiB message for the other fields.
    assert out["at_limit"] == out["limit"] * 4 // 3 == 56 * 1024 * 1024
    assert out["code"] == "too_large"
    assert out["message"] == ("The file is 50.0 MB, too large to check: at most 42 MB can be passed between the "
                              "extension's parts.")
