"""Checking every face on a page, and reporting a wrong verdict, in headless Chromium.

A page of 40 profile photos (made here) is scanned through the handler the
menu item "Check every face on this page" calls (extension/test/scan.mjs),
scrolled to the bottom; two verdicts are reported wrong, exported from the
options page and read back by ``training.evaluate``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from helpers import EXTENSION, encode, face_like
from training.evaluate import main as evaluate_main
from training.reports import list_reports
from training.reports import main as reports_main

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PROFILES = 40


def profile_page(site: Path) -> None:
    """40 profile cards in a grid taller than the window, an icon, a thumbnail too small to judge,
    one photo shown twice (the same URL) and one file under a second URL."""
    cards = []
    for index in range(PROFILES):
        (site / f"face{index:02d}.png").write_bytes(encode(face_like(300 + index, size=64, fake=index % 2 == 1)))
        cards.append(f'<div class="card"><img src="face{index:02d}.png" width="120" height="120">'
                     f"<p>Member {index}, 3{index % 10} km away</p></div>")
    (site / "copy01.png").write_bytes((site / "face01.png").read_bytes())
    (site / "icon.png").write_bytes(encode(face_like(1, size=16)))
    (site / "tiny.png").write_bytes(encode(face_like(2, size=20)))
    cards.append('<div class="card"><img src="copy01.png" width="120" height="120"><p>Same photo, other URL</p></div>')
    cards.append('<div class="card"><img src="face00.png" width="120" height="120"><p>Same URL again</p></div>')
    cards.append('<div class="card"><img src="tiny.png" width="100" height="100"><p>Tiny upload</p></div>')
    (site / "profiles.html").write_text(
        "<!doctype html><style>body{font:14px sans-serif} .grid{display:grid;grid-template-columns:repeat(5,200px);"
        "gap:30px} .card{height:190px} p{margin:4px 0}</style>"
        '<h1><img src="icon.png" width="16" height="16"> Profiles near you</h1>'
        f'<div class="grid">{"".join(cards)}</div>')


@pytest.fixture(scope="module")
def scan_run(browser, tmp_path_factory):
    node, chromium = browser
    work = tmp_path_factory.mktemp("scan")
    site = work / "site"
    site.mkdir()
    profile_page(site)
    request = {
        "extensionDir": str(EXTENSION / "dist" / "chrome"), "chromium": chromium, "siteDir": str(site),
        "page": "profiles.html",
        "reports": [{"src": "face02.png", "label": "fake", "thumbnail": True},
                    {"src": "face03.png", "label": "real", "pageUrl": True}],
        "exportTo": str(work / "reports.zip"),
    }
    result = subprocess.run([node, str(EXTENSION / "test" / "scan.mjs"), json.dumps(request)],
                            cwd=EXTENSION, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), site, work


def urls(run: dict, names) -> set[str]:
    return {f"{run['origin']}/{name}" for name in names}


def test_every_judgeable_image_gets_one_badge_and_the_summary_counts_them(scan_run):
    run, *_ = scan_run
    judgeable = urls(run, [f"face{index:02d}.png" for index in range(PROFILES)] + ["copy01.png"])
    final = run["final"]
    assert set(final["checked"]) == judgeable and len(final["checked"]) == len(judgeable)
    assert set(final["skipped"]) == urls(run, ["icon.png", "tiny.png"])
    assert {v["srcUrl"] for v in run["verdicts"]} == judgeable
    badges = {code: sum(v["code"] == code for v in run["verdicts"]) for code in final["counts"]}
    assert final["counts"] == badges == final["summary"]["counts"]
    assert badges["error"] == 0 and sum(badges.values()) == len(judgeable)
    assert f"{len(judgeable)} checked" in final["summary"]["text"]
    assert "2 too small to judge, skipped." in final["summary"]["text"]


def test_nothing_is_checked_twice(scan_run):
    run, *_ = scan_run
    # Each URL fetched once by the extension (face00.png is on the page twice), none too small fetched.
    assert run["fetches"] == {f"/{name}": 1 for name in [f"face{i:02d}.png" for i in range(PROFILES)] + ["copy01.png"]}
    copy = next(v for v in run["verdicts"] if v["srcUrl"].endswith("/copy01.png"))
    original = next(v for v in run["verdicts"] if v["srcUrl"].endswith("/face01.png"))
    assert copy["attribute"] == original["attribute"]


def test_images_in_view_first_the_others_after_scrolling(scan_run):
    run, *_ = scan_run
    in_view = set(run["inViewAtStart"])
    assert 0 < len(in_view) < PROFILES
    assert set(run["first"]["checked"]) == in_view  # the handler answers once those are checked
    assert run["first"]["waiting"] == 0
    assert len(set(run["final"]["checked"]) - in_view) == PROFILES + 1 - len(in_view)


def test_reports_are_recorded_listed_and_exported_in_the_140k_layout(scan_run):
    run, site, work = scan_run
    assert run["reports"][0].startswith("Recorded: AI-generated. 1 report kept")
    assert run["reports"][1].startswith("Recorded: a real photo. 2 reports kept")
    assert run["options"]["count"] == "2 reports, kept in this browser only."
    assert run["exported"]["status"] == "Exported 2 reports."
    with zipfile.ZipFile(work / "reports.zip") as archive:
        assert archive.testzip() is None
        lines = [json.loads(line) for line in archive.read("reports.jsonl").decode().splitlines()]
        thumbnail, full = lines
        assert thumbnail["file"].startswith("fake/") and thumbnail["kept"] == "thumbnail"
        assert full["file"] == f"real/{full['sha256']}.png" and full["kept"] == "image"
        assert archive.read(full["file"]) == (site / "face03.png").read_bytes()
        assert thumbnail["sha256"] == hashlib.sha256((site / "face02.png").read_bytes()).hexdigest()
        assert thumbnail["page_url"] is None and full["page_url"] == f"{run['origin']}/profiles.html"
        assert full["image_url"] == f"{run['origin']}/face03.png"
        shipped = json.loads((EXTENSION / "model" / "metadata.json").read_text())
        assert full["model"] == {"name": shipped["name"], "version": shipped["version"]}
        assert full["verdict"]["verdict"] in ("likely_ai", "inconclusive", "no_sign")
        archive.extractall(work / "export")


def test_training_evaluate_reads_the_export_as_a_regression_set(scan_run, tiny_model_path, capsys):
    run, site, work = scan_run
    export = work / "export"
    examples = list_reports(export)
    assert [(example.path.parent.name, example.label) for example in examples] == [("fake", 1), ("real", 0)]
    out = work / "regression"
    assert evaluate_main([str(tiny_model_path), str(export), "--out", str(out), "--no-sweep"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["overall"]["images"] == 2 and report["overall"]["real"] == 1 and report["overall"]["fake"] == 1
    assert all(source.startswith("reported:") for source in report["per_source"])
    right = round(report["overall"]["accuracy"] * 2)
    assert reports_main(["gate", str(out), "--min-accuracy", "0"]) == 0
    assert reports_main(["gate", str(out), "--min-accuracy", "1"]) == (0 if right == 2 else 1)
    assert f"{right} of 2 reported images right" in capsys.readouterr().out
