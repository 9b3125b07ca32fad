"""The extension in a real Firefox: the build from the same source gives the same verdicts.

Debian's Firefox ESR runs headless, driven through WebDriver BiDi by npm
``puppeteer-core`` (``extension/test/firefox.mjs``), with ``extension/dist/firefox``
installed as a temporary add-on. One Firefox run checks images through the
handler the context-menu item calls (one of them too large for the browser by
its settings, sent to a stand-in detection service that explains it), scans a
page, files a report by clicking the card and exports the reports; one Chromium run (``extension/test/drive.mjs``)
and the detection service check the same bytes. The shipped model throughout:
what a Firefox user gets.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aiface.bundle import load_bundle
from aiface.verdict import percent
from helpers import EXTENSION, QUANTIZED_TOLERANCE, build_extension, encode, face_like, tool
from server import create_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
BUILDS = EXTENSION / "dist"
SHIPPED_KERAS = ROOT / "server" / "model" / "aiface.keras"
ASTRONAUT = Path(__file__).parent / "data" / "astronaut_face.jpg"
LOCAL = {"localOnly": True, "serverUrl": "", "maxLocalMegapixels": 16}
# Too large for the browser by these settings: the scene goes to the service, which explains it.
SERVICE_FIRST = {"localOnly": False, "serverUrl": "{origin}/", "maxLocalMegapixels": 0.1}
# Both browsers run the same TF.js WebAssembly kernels on the same decoded pixels.
BETWEEN_BROWSERS = 1e-4
SCANNED = 6


def _images() -> dict[str, bytes]:
    """A real face (a JPEG, decoded by each side's own decoder), a face in a scene, images without one."""
    y, x = np.mgrid[0:360, 0:480]
    scene = np.stack([x * 255 / 480, y * 255 / 360, np.full(x.shape, 128)], axis=-1).astype(np.uint8)
    astronaut = np.asarray(Image.open(ASTRONAUT).convert("RGB"))
    scene[80 : 80 + astronaut.shape[0], 200 : 200 + astronaut.shape[1]] = astronaut
    return {
        "astronaut.jpg": ASTRONAUT.read_bytes(),
        "scene.png": encode(scene),
        "plain.png": encode(face_like(7, size=256)),
        "checkered.png": encode(face_like(8, size=256, fake=True)),
    }


def _service_answer() -> dict:
    """What a detection service answers for the scene, with a Grad-CAM overlay."""
    heat = np.zeros((32, 32, 4), dtype=np.uint8)
    heat[8:24, 8:24] = (255, 120, 0, 150)
    return {"probability_fake": 0.93, "label": "fake", "verdict": "likely_ai", "threshold": 0.88,
            "model": {"name": "m", "version": "1", "backbone": "tiny"}, "elapsed_ms": 3.0,
            "image": {"width": 480, "height": 360}, "faces": [], "scored": "whole_image",
            "explanation": {"png_base64": base64.b64encode(encode(heat)).decode(),
                            "box": {"x": 0, "y": 0, "width": 480, "height": 360}, "width": 32, "height": 32}}


def _profiles(site: Path) -> None:
    """A column of profile pictures, a window and a half high: some in view at first, the others after scrolling."""
    cards = []
    for index in range(SCANNED):
        (site / f"face{index}.png").write_bytes(encode(face_like(20 + index, size=160, fake=index % 2 == 1)))
        cards.append(f'<p><img src="face{index}.png" width="160" height="160"></p>')
    (site / "icon.png").write_bytes(encode(face_like(1, size=16)))
    (site / "profiles.html").write_text('<!doctype html><h1><img src="icon.png" width="16"> Profiles</h1>'
                                        f'<div style="line-height:0">{"".join(cards)}</div>')


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same images in Firefox (with a page scan, a report and its export) and in Chromium."""
    node, firefox, chromium = tool("node"), tool("firefox-esr"), tool("chromium", "/usr/bin/chromium")
    build_extension()
    site = tmp_path_factory.mktemp("firefox") / "site"
    site.mkdir()
    images = _images()
    for name, data in images.items():
        (site / name).write_bytes(data)
    _profiles(site)
    checks = [{"src": name, **({"settings": LOCAL} if index == 0 else {})} for index, name in enumerate(images)]
    scan = {"page": "profiles.html", "settings": LOCAL, "reports": [{"src": "face1.png", "label": "fake"}]}
    in_firefox = {"extensionDir": str(BUILDS / "firefox"), "firefox": firefox, "scan": scan,
                  "server": _service_answer(), "checks": [*checks, {"src": "scene.png", "settings": SERVICE_FIRST}]}
    run = {}
    for browser, script, request in (
        ("firefox", "firefox.mjs", in_firefox),
        ("chromium", "drive.mjs", {"extensionDir": str(BUILDS / "chrome"), "chromium": chromium, "checks": checks}),
    ):
        result = subprocess.run([node, str(EXTENSION / "test" / script), json.dumps({**request, "siteDir": str(site)})],
                                cwd=EXTENSION, capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stderr
        run[browser] = json.loads(result.stdout)
    return run, images, site


def test_the_firefox_build_has_no_offscreen_code_and_names_the_firefox_it_was_tested_in(runs):
    run, *_ = runs
    manifest = json.loads((BUILDS / "firefox" / "manifest.json").read_text())
    assert "offscreen" not in manifest["permissions"] and "service_worker" not in manifest["background"]
    assert not any(re.search(r"\boffscreen\.", path.read_text()) for path in (BUILDS / "firefox").rglob("*.js"))
    gecko = manifest["browser_specific_settings"]["gecko"]
    tested = run["firefox"]["firefox"]
    assert gecko["id"] and re.match(r"firefox/(\d+)", tested), tested
    assert int(re.match(r"firefox/(\d+)", tested)[1]) == int(gecko["strict_min_version"].split(".")[0])


def test_firefox_gives_a_verdict_on_a_face(runs):
    run, *_ = runs
    result = run["firefox"]["results"][0]
    verdict = result["verdict"]
    assert verdict["where"] == "local" and verdict["timings"]["backend"] == "wasm"
    assert verdict["scored"] == "faces" and len(verdict["faces"]) == 1
    assert float(result["attribute"]) == verdict["probability"]
    assert "Checked in this browser" in result["text"] and percent(verdict["probability"]) in result["text"]
    assert "1 face checked" in result["text"]


def test_same_bytes_same_verdict_in_firefox_chromium_and_the_service(runs):
    run, images, _ = runs
    firefox, chromium = (run[browser]["results"] for browser in ("firefox", "chromium"))
    for name, in_firefox, in_chromium in zip(images, firefox[: len(images)], chromium, strict=True):
        ours, theirs = in_firefox["verdict"], in_chromium["verdict"]
        assert [face["box"] for face in ours["faces"]] == [face["box"] for face in theirs["faces"]], name
        assert ours["probability"] == pytest.approx(theirs["probability"], abs=BETWEEN_BROWSERS), name
        assert ours["label"] == theirs["label"] and ours["scored"] == theirs["scored"], name
    shipped = json.loads((EXTENSION / "model" / "metadata.json").read_text())
    if not SHIPPED_KERAS.is_file():
        pytest.skip(f"{SHIPPED_KERAS.relative_to(ROOT)} is not there: the service's side is not checked")
    bundle = load_bundle(SHIPPED_KERAS)
    if (bundle.metadata.name, bundle.metadata.version) != (shipped["name"], shipped["version"]):
        pytest.skip(f"extension/model was not converted from {SHIPPED_KERAS.relative_to(ROOT)}")
    client = create_app({"MODEL_PATH": str(SHIPPED_KERAS)}).test_client()
    for (name, data), in_firefox in zip(images.items(), firefox[: len(images)], strict=True):
        answer = client.post("/v1/detect", data={"image": (io.BytesIO(data), name)}).get_json()
        assert answer["scored"] == in_firefox["verdict"]["scored"], name
        assert in_firefox["verdict"]["probability"] == pytest.approx(answer["probability_fake"],
                                                                      abs=QUANTIZED_TOLERANCE), name


def test_firefox_sends_an_image_too_large_for_the_browser_to_the_service_and_shows_its_explanation(runs):
    run, *_ = runs
    result = run["firefox"]["results"][-1]
    verdict = result["verdict"]
    assert len(result["uploads"]) == 1 and verdict["where"] == "server"
    assert float(result["attribute"]) == 0.93 and verdict["explanation"]["width"] == 32
    assert "Checked by your detection service" in result["text"]


def test_firefox_scans_a_page_in_view_first_then_as_it_scrolls(runs):
    run, *_ = runs
    scan = run["firefox"]["scan"]
    origin = run["firefox"]["origin"]
    judgeable = {f"{origin}/face{index}.png" for index in range(SCANNED)}
    assert 0 < len(scan["first"]["checked"]) < SCANNED and scan["first"]["waiting"] == 0
    assert set(scan["final"]["checked"]) == judgeable and set(scan["final"]["skipped"]) == {f"{origin}/icon.png"}
    assert {verdict["srcUrl"] for verdict in scan["verdicts"]} == judgeable
    assert scan["final"]["counts"]["error"] == 0
    assert f"{SCANNED} checked" in scan["final"]["summary"]["text"]


def test_firefox_records_a_report_and_exports_it(runs):
    run, _, site = runs
    scan = run["firefox"]["scan"]
    assert scan["reports"][0].startswith("Recorded: AI-generated. 1 report kept")
    assert scan["exported"]["count"] == 1
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(scan["exported"]["zip"]))) as archive:
        assert archive.testzip() is None
        [line] = [json.loads(line) for line in archive.read("reports.jsonl").decode().splitlines()]
        original = (site / "face1.png").read_bytes()
        assert line["file"] == f"fake/{hashlib.sha256(original).hexdigest()}.png" and line["kept"] == "image"
        assert archive.read(line["file"]) == original
        shipped = json.loads((EXTENSION / "model" / "metadata.json").read_text())
        assert line["model"] == {"name": shipped["name"], "version": shipped["version"]}
        # Addresses are kept only when the reporter ticks the box.
        assert line["page_url"] is None and line["image_url"] is None
