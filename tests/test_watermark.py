"""The open generators' invisible watermarks: read as the package reads them, in both runtimes, into provenance.

The marks are embedded here by the ``invisible-watermark`` package itself
(tests/helpers.py), the way each generator's pipeline calls it.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from aiface import provenance_rule as rule
from aiface import watermark
from aiface.provenance import read_provenance
from helpers import GENERATOR_PIPELINES, drive, embed_watermark, encode, package_decode, photo_like

# node, Chromium and the built extension, as the other browser tests use them.

REPO = Path(__file__).resolve().parents[1]
WATERMARK_JS = REPO / "extension" / "src" / "watermark.js"
PROVENANCE_JS = REPO / "extension" / "src" / "provenance.js"
BITS = {mark["name"]: mark["bits"] for mark in watermark.MARKS}


@pytest.fixture(scope="module")
def marked():
    """pipeline -> a 512 x 512 picture it marked; '' -> the picture unmarked."""
    cover = photo_like(0)
    pictures = {"": cover}
    try:
        for pipeline, name, float_pixels, swapped in GENERATOR_PIPELINES:
            pictures[pipeline] = embed_watermark(cover, BITS[name], float_pixels, swapped)
    except ModuleNotFoundError as error:  # the package, OpenCV or PyWavelets: the dev extra (bash .ci/setup --test)
        pytest.skip(f"the invisible-watermark package cannot embed marks here: {error}")
    return pictures


def test_the_decoder_reads_bit_for_bit_what_the_package_reads(marked):
    # Odd sizes: the rows and columns past the last whole block are left out alike.
    for picture in (marked["SDXL"][:389, :311], marked["SD 1"][5:, 3:], photo_like(1, 301, 257)):
        for domain in watermark.DOMAINS:
            lengths = sorted({len(bits) for bits in BITS.values()})
            ours = watermark.decode_bits(picture, domain, lengths)
            for length in lengths:
                assert ours[length] == package_decode(picture, length, domain), (picture.shape, domain, length)


@pytest.mark.parametrize("pipeline", [pipeline for pipeline, *_ in GENERATOR_PIPELINES])
def test_each_pipelines_mark_is_found(marked, pipeline):
    name = next(name for each, name, *_ in GENERATOR_PIPELINES if each == pipeline)
    found = watermark.find_mark(marked[pipeline])
    assert found is not None and found["name"] == name and found["bits"] == len(BITS[name])
    assert found["matching_bits"] >= watermark.MIN_AGREEMENT * found["bits"]


def test_an_unmarked_picture_has_no_mark_and_agrees_only_by_chance(marked):
    assert watermark.find_mark(marked[""]) is None
    for name, matching in watermark.agreements(marked[""]).items():
        assert matching < watermark.MIN_AGREEMENT * len(BITS[name]), name


def test_a_marked_file_is_declared_by_its_watermark_in_provenance(marked):
    summary = rule.summarise(read_provenance(encode(marked["FLUX.1"])))
    found = summary["watermark"]
    assert summary["status"] == rule.WATERMARKED_AI and found["name"] == "FLUX.1"
    assert summary["declared_by"] == "an invisible FLUX.1 watermark"
    assert f"({found['matching_bits']} of 46 bits match)" in summary["line"] and "not a signature" in summary["line"]
    for pixels in ("likely_ai", "inconclusive", "no_sign"):
        assert rule.combine(pixels, summary) == rule.DECLARED_AI


def test_the_service_gives_a_watermarked_upload_the_declared_verdict(client, marked):
    body = client.post("/v1/detect", data=encode(marked["SD 2"]), content_type="image/png").json
    assert body["provenance"]["status"] == rule.WATERMARKED_AI
    assert body["provenance"]["watermark"]["name"] == "Stable Diffusion 2"
    assert body["verdict"] == "declared_ai" and body["label"] == "fake"


def test_metadata_that_declares_ai_outranks_the_watermark_and_both_are_reported():
    findings = {"c2pa": None, "texts": {"png:parameters": "Steps: 20, Sampler: Euler a"},
                "watermark": {"name": "Stable Diffusion 1", "bits": 136, "matching_bits": 130}}
    summary = rule.summarise(findings)
    assert summary["status"] == rule.DECLARED_AI and summary["watermark"] == findings["watermark"]


def test_a_reader_that_stopped_never_hides_the_mark():
    mark = {"name": "Stable Diffusion XL", "bits": 48, "matching_bits": 47}
    stopped = {"validation": "unavailable", "problems": ["timeout: reading it took too long"], "signer": None,
               "claim_generator": None, "digital_source_types": []}
    unread = ["over_limit: more than 10,000 PNG chunks"]
    for findings in ({"c2pa": stopped, "texts": {}, "watermark": mark},
                     {"c2pa": None, "texts": {}, "unread": unread, "watermark": mark}):
        summary = rule.summarise(findings)
        assert summary["status"] == rule.WATERMARKED_AI and rule.combine("no_sign", summary) == rule.DECLARED_AI


def test_what_is_not_read(marked):
    assert watermark.read_watermark(b"not an image") is None
    assert watermark.find_mark(marked["SD 2"][:255, :256]) is None  # fewer pixels than any mark needs
    # Over MAX_PIXELS: refused from the header, before decoding.
    side = int(watermark.MAX_PIXELS ** 0.5) + 1
    assert watermark.read_watermark(encode(np.zeros((side, side, 3), np.uint8))) is None
    assert watermark.find_mark(np.zeros((7, 10_000, 3), np.uint8)) is None  # too thin for a single block
    with pytest.raises(ValueError, match="domain"):
        watermark.decode_bits(marked[""], "float16", [48])


def test_a_jpeg_or_a_resized_copy_loses_the_mark(marked):
    # What docs/reliability.md measures: the mark is fragile (benchmarks/watermarks.py).
    from PIL import Image

    resized = np.asarray(Image.fromarray(marked["SD 1"]).resize((384, 384), Image.LANCZOS))
    assert watermark.find_mark(resized) is None


def test_the_extension_reads_the_committed_table():
    committed = (REPO / "extension" / "src" / "watermark.json").read_text(encoding="utf-8")
    assert committed == watermark.table_json(), (
        "extension/src/watermark.json is stale: run python -m aiface.watermark extension/src/watermark.json")


def test_the_openapi_document_lists_the_marks_and_the_status():
    schema = json.loads((REPO / "server" / "openapi.json").read_text())["components"]["schemas"]["Provenance"]
    assert schema["properties"]["watermark"]["properties"]["name"]["enum"] == list(BITS)
    assert rule.WATERMARKED_AI in schema["properties"]["status"]["enum"]


# Reads {name: [base64 RGB, width, height, findings]} from stdin; writes, per name, the bits in each
# domain, the mark found and the provenance summary of the findings.
DRIVER = """
import { decodeBits, findMark, MARKS } from %r;
import { summarise } from %r;
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const out = {};
const lengths = [...new Set(MARKS.map((mark) => mark.bits.length))];
for (const [name, [rgb, width, height, findings]] of Object.entries(JSON.parse(Buffer.concat(chunks).toString()))) {
  const pixels = new Uint8Array(Buffer.from(rgb, 'base64'));
  const bits = Object.fromEntries(['8-bit', 'float', 'float-swapped'].map(
    (domain) => [domain, decodeBits(pixels, width, height, domain, lengths)]));
  out[name] = [bits, findMark(pixels, width, height), summarise(findings)];
}
process.stdout.write(JSON.stringify(out));
"""


@pytest.mark.process
def test_the_extension_reads_the_same_bits_and_marks_as_python(marked):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (bash .ci/setup --test installs what the tests need)")
    pictures = {**marked, "odd": photo_like(2, 333, 291), "thin": photo_like(3, 10_000, 7)}
    cases = {}
    for name, picture in pictures.items():
        found = watermark.find_mark(picture)
        cases[name] = [base64.b64encode(picture.tobytes()).decode(), picture.shape[1], picture.shape[0],
                       {"c2pa": None, "texts": {}, "watermark": found}]
    # The same mark with a reader stopped part-way: still the mark's status, in both runtimes.
    unread = ["over_limit: more than 10,000 chunks"]
    cases["SDXL, unread"] = [*cases["SDXL"][:3], {**cases["SDXL"][3], "unread": unread}]
    pictures["SDXL, unread"] = pictures["SDXL"]
    result = subprocess.run([node, "--no-warnings", "--input-type=module", "-e",
                             DRIVER % (WATERMARK_JS.as_uri(), PROVENANCE_JS.as_uri())],
                            input=json.dumps(cases), capture_output=True, text=True, check=True, timeout=120)
    js = json.loads(result.stdout)
    lengths = sorted({len(bits) for bits in BITS.values()})
    for name, picture in pictures.items():
        bits, found, summary = js[name]
        for domain in watermark.DOMAINS:
            python = watermark.decode_bits(picture, domain, lengths)
            assert bits[domain] == {str(length): python[length] for length in lengths}, (name, domain)
        assert found == cases[name][3]["watermark"], name
        assert summary == rule.summarise(cases[name][3]), name
    assert js["SDXL"][2]["status"] == js["SDXL, unread"][2]["status"] == rule.WATERMARKED_AI


@pytest.mark.browser
@pytest.mark.slow
def test_the_extension_reads_and_shows_a_watermark_as_the_service(browser, marked, tmp_path):  # noqa: F811
    files = {"sdxl.png": encode(marked["SDXL, diffusers < 0.27"]), "plain.png": encode(marked[""])}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    settings = {"localOnly": True, "serverUrl": "", "maxLocalMegapixels": 16, "trustAnchors": ""}
    results = drive(browser, tmp_path, [{"src": name, "settings": settings} for name in files])["results"]
    for (name, data), result in zip(files.items(), results, strict=True):
        expected = rule.summarise(read_provenance(data))
        assert result["verdict"]["provenance"] == expected, name
        assert result["provenance"] == expected["status"], name
    watermarked = results[0]
    assert watermarked["provenance"] == rule.WATERMARKED_AI and watermarked["verdict"]["label"] == "fake"
    assert watermarked["verdict"]["words"]["code"] == "declared_ai"
    assert rule.summarise(read_provenance(files["sdxl.png"]))["line"] in watermarked["text"]
    assert "an invisible Stable Diffusion XL watermark" in watermarked["text"]
