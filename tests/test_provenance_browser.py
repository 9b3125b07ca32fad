"""One provenance rule, two runtimes: extension/src/provenance.js reads and judges every fixture as the service does.

Under node: the JS readers (XMP, PNG text chunks, EXIF) and the rule on the
Python findings. In headless Chromium: the whole check, C2PA included (the
official reader's WebAssembly in the offscreen document), shown on the card
and as ``data-ai-face-provenance``.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from aiface.provenance import read_provenance, read_texts
from aiface.provenance_rule import DECLARED_WORDS, summarise
from helpers import drive
from provenance_fixtures import fixtures, trusted_root

PROVENANCE_JS = Path(__file__).resolve().parents[1] / "extension" / "src" / "provenance.js"
# Reads {name: [base64 file, python findings]} from stdin, writes {name: [texts, summary]}.
DRIVER = """
import { readTexts, summarise } from %r;
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const cases = JSON.parse(Buffer.concat(chunks).toString());
const out = {};
for (const [name, [file, findings]] of Object.entries(cases)) {
  out[name] = [await readTexts(new Uint8Array(Buffer.from(file, 'base64'))), summarise(findings)];
}
process.stdout.write(JSON.stringify(out));
"""


def anchors() -> str:
    return trusted_root().decode()


def test_js_reads_the_same_texts_and_judges_the_same_findings_as_python():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (bash .ci/setup --test installs what the tests need)")
    cases = {name: [base64.b64encode(data).decode(), read_provenance(data, anchors())]
             for name, (data, _) in fixtures().items()}
    result = subprocess.run([node, "--no-warnings", "--input-type=module", "-e", DRIVER % PROVENANCE_JS.as_uri()],
                            input=json.dumps(cases), capture_output=True, text=True, check=True, timeout=60)
    js = json.loads(result.stdout)
    for name, (data, status) in fixtures().items():
        texts, summary = js[name]
        assert texts == read_texts(data), name
        assert summary == summarise(cases[name][1]) and summary["status"] == status, name


@pytest.mark.browser
@pytest.mark.slow
def test_the_extension_reads_and_shows_each_fixtures_provenance_as_the_service(browser, tmp_path):
    names = sorted(fixtures())
    for name in names:
        (tmp_path / name).write_bytes(fixtures()[name][0])
    settings = {"localOnly": True, "serverUrl": "", "maxLocalMegapixels": 16, "trustAnchors": anchors()}
    results = drive(browser, tmp_path, [{"src": name, "settings": settings} for name in names])["results"]
    for name, result in zip(names, results, strict=True):
        data, status = fixtures()[name]
        expected = summarise(read_provenance(data, anchors()))
        verdict = result["verdict"]
        assert verdict["provenance"] == expected, name
        assert result["provenance"] == status, name
        if expected["line"]:
            assert expected["line"] in result["text"], name
        if status == "declared_ai":
            assert verdict["label"] == "fake" and verdict["words"]["code"] == "declared_ai", name
            assert DECLARED_WORDS["label"] in result["text"] and DECLARED_WORDS["badge"] in result["text"], name
        else:
            assert verdict["words"]["code"] != "declared_ai", name
        assert verdict["timings"]["provenance_ms"] >= 0
