"""One provenance rule, two runtimes: extension/src/provenance.js reads and judges every fixture as the service does.

Under node: the JS readers (XMP, PNG text chunks, EXIF) and the rule on the
Python findings. In headless Chromium: the whole check, C2PA included (the
official reader's WebAssembly in the offscreen document), shown on the card
and in the verdict read in the isolated world.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from aiface.provenance import Budget, read_provenance, read_texts
from aiface.provenance_rule import DECLARED_WORDS, summarise
from helpers import drive
from provenance_fixtures import fixtures, picture, sign, trusted_root

PROVENANCE_JS = Path(__file__).resolve().parents[1] / "extension" / "src" / "provenance.js"
# Reads {name: [base64 file, python findings]} from stdin, writes {name: [texts, unread, summary]}.
DRIVER = """
import { Budget, readTexts, summarise } from %r;
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const cases = JSON.parse(Buffer.concat(chunks).toString());
const out = {};
for (const [name, [file, findings]] of Object.entries(cases)) {
  const budget = new Budget();
  const texts = await readTexts(new Uint8Array(Buffer.from(file, 'base64')), budget);
  out[name] = [texts, budget.unread, summarise(findings)];
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
        texts, unread, summary = js[name]
        budget = Budget()
        assert texts == read_texts(data, budget) and unread == budget.unread, name
        assert summary == summarise(cases[name][1]) and summary["status"] == status, name


# Reads [base64 file, ...] from stdin, writes [[ms, heap MiB, unread], ...]: the JS readers, timed, must never throw.
FUZZ_DRIVER = """
import { Budget, mayHoldManifest, readTexts, summarise } from %r;
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const out = [];
for (const file of JSON.parse(Buffer.concat(chunks).toString())) {
  const bytes = new Uint8Array(Buffer.from(file, 'base64'));
  const budget = new Budget();
  const started = performance.now();
  const texts = await readTexts(bytes, budget);
  summarise({ texts, unread: budget.unread, c2pa: null });
  mayHoldManifest(bytes);
  out.push([performance.now() - started, process.memoryUsage().heapUsed / 2 ** 20, budget.unread]);
}
process.stdout.write(JSON.stringify(out));
"""


def _mutations(count: int) -> list[bytes]:
    """The crafted fixtures with a few bytes overwritten, cut or repeated (the Python fuzz suite's edits)."""
    import random

    rng = random.Random(36)
    seeds = [data for data, _ in fixtures().values()]
    out = list(seeds)
    while len(out) < count:
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            edit = rng.choice(["overwrite", "truncate", "repeat"])
            if edit == "overwrite":
                data[at:at + 4] = rng.randbytes(rng.randint(1, 4))
            elif edit == "truncate":
                del data[max(at, 1):]
            else:
                data[at:at] = data[at:at + rng.randint(1, 256)] * rng.randint(1, 64)
        out.append(bytes(data))
    return out


def test_js_readers_stay_within_their_time_and_memory_on_crafted_files():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (bash .ci/setup --test installs what the tests need)")
    files = _mutations(120)
    result = subprocess.run([node, "--no-warnings", "--input-type=module", "-e", FUZZ_DRIVER % PROVENANCE_JS.as_uri()],
                            input=json.dumps([base64.b64encode(data).decode() for data in files]),
                            capture_output=True, text=True, check=True, timeout=120)
    timings = json.loads(result.stdout)
    assert len(timings) == len(files)
    assert max(ms for ms, _, _ in timings) < 2000 and max(heap for _, heap, _ in timings) < 256, timings
    for data, (_, _, unread) in zip(files, timings, strict=True):
        budget = Budget()
        read_texts(data, budget)
        assert [entry.split(":")[0] for entry in unread] == [entry.split(":")[0] for entry in budget.unread]


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


@pytest.mark.browser
@pytest.mark.slow
def test_the_extension_never_fetches_a_manifest_named_in_a_file(browser, tmp_path, listener):  # noqa: F811
    data = sign(picture("JPEG"), "JPEG", "trainedAlgorithmicMedia", "Imagine AI Inc", "Imagine",
                remote_url=listener.url)
    (tmp_path / "remote.jpg").write_bytes(data)
    settings = {"localOnly": True, "serverUrl": "", "maxLocalMegapixels": 16, "trustAnchors": ""}
    checks = [{"src": "remote.jpg", "settings": settings},
              {"src": "data:image/jpeg;base64," + base64.b64encode(data).decode(), "settings": settings}]
    results = drive(browser, tmp_path, checks)["results"]
    assert listener.connections() == 0
    assert [result["provenance"] for result in results] == ["remote", "remote"]
