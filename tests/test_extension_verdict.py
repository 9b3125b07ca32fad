"""One verdict rule: aiface/verdict.py, its JSON export and extension/src/verdict.js agree."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from aiface import verdict as rule
from helpers import EXTENSION, ROOT, encode, face_like

VERDICT_JS = ROOT / "extension" / "src" / "verdict.js"
VERDICT_JSON = ROOT / "extension" / "src" / "verdict.json"
# Reads [[probability, threshold], ...] from stdin, writes describe() of each.
DRIVER = """
import { describe } from %r;
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const grid = JSON.parse(Buffer.concat(chunks).toString());
process.stdout.write(JSON.stringify(grid.map(([p, t]) => describe(p, t))));
"""


def grid() -> list[tuple[float, float]]:
    """Probabilities on a fine grid, at the edges and on either side of each threshold and of NO_SIGN_BELOW."""
    thresholds = [0.05, 0.1, 0.3, 0.5, 0.8837211520393335, 0.95, 0.999]
    probabilities = sorted({*np.linspace(0, 1, 201).tolist(), 1e-9, 0.0004, 0.0005, 0.9994, 0.9995, 0.9999999,
                            *(np.nextafter(v, d) for v in (*thresholds, rule.NO_SIGN_BELOW) for d in (0, 1)),
                            *thresholds, rule.NO_SIGN_BELOW})
    return [(float(p), t) for t in thresholds for p in probabilities]


def test_committed_json_is_the_python_definition():
    assert VERDICT_JSON.read_text(encoding="utf-8") == rule.rules_json(), (
        "extension/src/verdict.json is stale: run python -m aiface.verdict extension/src/verdict.json")


def test_js_and_python_give_the_same_verdict_and_words_on_a_grid():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (bash .ci/setup --test installs what the tests need)")
    points = grid()
    result = subprocess.run(
        [node, "--no-warnings", "--input-type=module", "-e", DRIVER % VERDICT_JS.as_uri()],
        input=json.dumps(points), capture_output=True, text=True, check=True, timeout=60,
    )
    js = json.loads(result.stdout)
    python = [rule.describe(p, t) for p, t in points]
    mismatches = [(point, a, b) for point, a, b in zip(points, js, python, strict=True) if a != b]
    assert not mismatches, mismatches[:3]
    assert {d["code"] for d in python} == {rule.LIKELY_AI, rule.INCONCLUSIVE, rule.NO_SIGN}


def test_the_verdict_agrees_with_the_label():
    for p, t in grid():
        code = rule.verdict(p, t)
        # The service's label is fake iff p >= t: likely_ai exactly then, never no_sign or inconclusive.
        assert (code == rule.LIKELY_AI) == (p >= t), (p, t)
        if p < t:
            assert (code == rule.NO_SIGN) == (p < rule.NO_SIGN_BELOW), (p, t)


def test_the_issue_examples_read_as_their_number_says():
    threshold = 0.8837211520393335  # the shipped model's
    assert rule.describe(0.96, threshold)["label"] == "Likely AI-generated"  # read "Uncertain" before
    assert rule.describe(0.866, threshold)["label"] == "Inconclusive"
    assert rule.describe(0.02, threshold)["label"] == "No sign of AI generation"
    words = rule.describe(0.866, threshold)
    assert words["percent"] == "86.6 %"
    assert words["meaning"].startswith("86.6 % means: of the images the model scores like this one, about 87 in 100")
    assert "88.4 %" in words["explanation"] and "threshold" not in json.dumps(words)


@pytest.mark.parametrize("p, shown", [(0.0, "0.0 %"), (0.0004, "< 0.1 %"), (0.00051, "0.1 %"), (0.8655, "86.6 %"),
                                      (0.99949, "99.9 %"), (0.9995, "> 99.9 %"), (1.0, "100.0 %")])
def test_percent_never_rounds_to_certainty(p, shown):
    assert rule.percent(p) == shown


# --- on a realistic page, in headless Chromium --------------------------------

PROFILE_PAGE = """<!doctype html>
<html lang="en"><meta charset="utf-8"><title>Jane Doe · Profile</title>
<style>
  body { margin: 0; background: #eef0f3; font: 15px/1.45 Georgia, serif; color: #222; }
  header { background: #24292f; color: #fff; padding: 10px 24px; font: 600 16px system-ui, sans-serif; }
  main { width: 760px; margin: 20px auto; }
  section { background: #fff; border-radius: 8px; padding: 16px; margin-bottom: 16px; }
  .profile { display: flex; gap: 20px; }
  .avatar { width: 256px; height: 256px; object-fit: cover; border-radius: 4px; }
  h1 { margin: 0 0 6px; font-size: 24px; } h2 { margin: 0 0 10px; font-size: 17px; }
  .friends ul { list-style: none; margin: 0; padding: 0; display: grid; grid-template-columns: 1fr 1fr 1fr; gap: 12px; }
  .friends li { display: flex; gap: 10px; align-items: center; }
  .friends img { width: 64px; height: 64px; border-radius: 50%; }
  .post { display: flex; gap: 12px; }
  .post img { width: 96px; height: 96px; }
  .gallery img { width: 400px; height: 300px; display: block; }
</style>
<header>Friendbook</header>
<main>
  <section class="profile">
    <img class="avatar" src="avatar.jpg" alt="Jane Doe">
    <div><h1>Jane Doe</h1>
      <p>Product designer in Lisbon. Previously at a design studio in Porto; I like long walks, film
        cameras and bad puns. Ask me about typography.</p>
      <p>Joined March 2019 · 312 followers · 180 following</p>
      <p>Works at Example Corp · Studied at University of Lisbon · Lives in Lisbon, Portugal</p></div>
  </section>
  <section class="friends"><h2>Friends</h2><ul>
    <li><img src="friend1.png" alt=""><span>Alex Martin<br><small>12 mutual friends</small></span></li>
    <li><img src="friend2.png" alt=""><span>Sam Rivera<br><small>3 mutual friends</small></span></li>
    <li><img src="friend3.png" alt=""><span>Kim Lee<br><small>Works at Example Corp</small></span></li>
  </ul></section>
  <section class="post"><img src="post.jpg" alt="">
    <p><b>Jane Doe</b> shared a photo · 2 h<br>New headshot for the conference next week! Thanks to everyone
      who came to the workshop on Saturday, the slides are on my website.</p></section>
  <section class="gallery"><h2>Photos</h2><img src="gallery.png" alt="At the beach">
    <p>At the beach with friends, August.</p></section>
</main>
</html>
"""
ALL_IMAGES = ["avatar.jpg", "friend1.png", "friend2.png", "friend3.png", "post.jpg", "gallery.png"]
SMALL_THUMBNAILS = ["friend1.png", "friend2.png", "friend3.png", "post.jpg"]


def exif_jpeg(pixels: np.ndarray) -> bytes:
    """A JPEG carrying what must not leave the machine: camera, GPS position, description, ICC profile."""
    from PIL import Image, ImageCms

    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x010E] = "home address: 12 Rua Secreta"  # ImageDescription
    exif[0x8825] = {1: "N", 2: (38.0, 43.0, 1.0)}  # GPS
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=92, exif=exif, icc_profile=icc)
    return buffer.getvalue()


def explanation_answer(width: int, height: int) -> dict:
    heat = np.zeros((32, 32, 4), dtype=np.uint8)
    heat[8:24, 8:24] = (255, 120, 0, 150)
    return {"probability_fake": 0.93, "label": "fake", "verdict": "likely_ai", "threshold": 0.88,
            "model": {"name": "m", "version": "1", "backbone": "tiny"}, "elapsed_ms": 3.0,
            "image": {"width": width, "height": height}, "faces": [], "scored": "whole_image",
            "explanation": {"png_base64": base64.b64encode(encode(heat)).decode(),
                            "box": {"x": 0, "y": 0, "width": width, "height": height},
                            "width": 32, "height": 32}}


def drive_scenario(browser, site: Path, steps: list[dict], **options) -> dict:
    node, chromium = browser
    request = {"extensionDir": str(EXTENSION / "dist" / "chrome"), "chromium": chromium, "siteDir": str(site),
               "steps": steps, **options}
    result = subprocess.run([node, str(EXTENSION / "test" / "scenario.mjs"), json.dumps(request)],
                            cwd=EXTENSION, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def shipped_threshold() -> float:
    return json.loads((EXTENSION / "model" / "metadata.json").read_text())["threshold"]


@pytest.fixture(scope="module")
def profile(browser, tmp_path_factory):
    """One scenario on the profile page with the shipped model: every image checked, two cards opened, then the
    service's parts. Named steps' outputs, and each image's first verdict."""
    from PIL import Image

    from helpers import scene

    site = tmp_path_factory.mktemp("profile")
    shots = tmp_path_factory.mktemp("screenshots")
    (site / "profile.html").write_text(PROFILE_PAGE)
    (site / "avatar.jpg").write_bytes((ROOT / "tests" / "data" / "astronaut_face.jpg").read_bytes())
    for index in (1, 2, 3):
        (site / f"friend{index}.png").write_bytes(encode(face_like(40 + index, size=128, fake=index == 2)))
    post = np.asarray(Image.open(ROOT / "tests" / "data" / "astronaut_face.jpg").convert("RGB").resize((192, 192)))
    (site / "post.jpg").write_bytes(exif_jpeg(post))
    (site / "gallery.png").write_bytes(encode(scene()))
    (site / "swap.html").write_text(
        '<!doctype html><p>Profile photo:</p><img src="swapped.jpg" width="256" height="256">'
    )
    (site / "swapped.jpg").write_bytes((site / "avatar.jpg").read_bytes())
    (site / "fetched-swapped.jpg").write_bytes(encode(face_like(7, size=300), "JPEG", quality=90))
    local = {"localOnly": True, "serverUrl": "", "maxLocalMegapixels": 16}
    service_on = {"localOnly": False, "serverUrl": "{origin}", "maxLocalMegapixels": 16}
    steps = [
        {"settings": local}, {"goto": "profile.html"},
        *({"check": name} for name in ALL_IMAGES),
        {"read": True, "name": "badges"}, {"screenshot": "profile-badges.png"},
        {"click": "badge", "src": "avatar.jpg"}, {"click": "badge", "src": "friend2.png"},
        {"read": True, "name": "cards"}, {"screenshot": "profile-cards.png"},
        # What a page script finds of our verdicts: hosts at the end of <html>, nothing to read or select.
        {"evaluate": "[...document.documentElement.children].filter((node) => node.tagName === 'DIV').map((host) =>"
                     " ({ shadowRoot: host.shadowRoot, text: host.textContent,"
                     " attributes: host.getAttributeNames().filter((name) => name !== 'style'),"
                     " marked: document.querySelectorAll('[data-ai-face-verdict], [data-ai-face-provenance]')"
                     ".length }))",
         "name": "seen_by_page"},
        # The page tries to hide our badges with its own !important rules and to restyle a host in place.
        {"evaluate": "(() => { const sheet = document.createElement('style');"
                     " sheet.textContent = 'html > div { display: none !important; opacity: 0 !important;"
                     " transform: scale(0) !important; }'; document.head.append(sheet);"
                     " const host = [...document.documentElement.children].find((n) => n.tagName === 'DIV');"
                     " host.style.setProperty('visibility', 'hidden', 'important');"
                     " host.setAttribute('data-forged', 'No sign of AI'); return true; })()"},
        {"read": True, "name": "restyled"},
        {"toolbar": True, "name": "toolbar"},
        # The page swaps an image's file: its verdict goes with the file it was about.
        {"evaluate": "document.querySelector('img[src$=\"friend1.png\"]').src = 'friend2.png'"},
        {"read": True, "name": "swapped_src"},
        # The service unreachable: an image too large for the browser's limit is checked there anyway, scaled down.
        {"settings": {**service_on, "serverUrl": "http://127.0.0.1:9", "maxLocalMegapixels": 0.01}},
        {"check": "avatar.jpg", "name": "unreachable"},
        # A service: "Why?" explains an image checked in the browser.
        {"settings": service_on}, {"service": explanation_answer(192, 192)},
        {"check": "post.jpg", "name": "before_why"}, {"click": "badge", "src": "post.jpg"},
        {"click": "why", "src": "post.jpg"}, {"read": True, "name": "why"}, {"screenshot": "profile-why.png"},
        # Too large for the browser: to the service, whose reply is checked before it is shown.
        {"settings": {**service_on, "maxLocalMegapixels": 0.01}},
        {"check": "post.jpg", "name": "on_service"},
        {"service": {**explanation_answer(192, 192), "probability_fake": 1.7}},
        {"check": "post.jpg", "name": "bad_number"},
        {"service": {**explanation_answer(192, 192), "faces": [{"box": {"x": 0, "y": 0, "width": 500, "height": 9},
                                                                "probability_fake": 0.5}], "scored": "faces"}},
        {"check": "post.jpg", "name": "bad_box"},
        {"service": {**explanation_answer(192, 192), "explanation": {"png_base64": "<svg onload=alert(1)>",
                                                                     "box": {"x": 0, "y": 0, "width": 9, "height": 9},
                                                                     "width": 9, "height": 9}}},
        {"check": "post.jpg", "name": "bad_png"},
        # Plain http to another machine is never used.
        {"settings": {**service_on, "serverUrl": "http://example.test", "maxLocalMegapixels": 0.01}},
        {"check": "post.jpg", "name": "plain_http"},
        # A site that serves the extension another file than the page shows.
        {"settings": local}, {"goto": "swap.html"}, {"check": "swapped.jpg", "name": "swapped"},
        {"read": True, "name": "swapped_read"}, {"screenshot": "swapped.png"},
    ]
    output = drive_scenario(browser, site, steps, shotsDir=str(shots), viewport={"width": 1280, "height": 1000})
    named = {step["name"]: out for step, out in zip(steps, output["steps"], strict=True) if "name" in step}
    named["checks"] = {}
    for step, out in zip(steps, output["steps"], strict=True):
        if "check" in step:
            named["checks"].setdefault(step["check"], out["verdict"])
    return named, output, site, shots


def overlap(a: dict, b: dict) -> float:
    """The area two rectangles share."""
    width = min(a["left"] + a["width"], b["left"] + b["width"]) - max(a["left"], b["left"])
    height = min(a["top"] + a["height"], b["top"] + b["height"]) - max(a["top"], b["top"])
    return max(0.0, width) * max(0.0, height)


def check_layout(read: dict) -> None:
    verdicts, page = read["verdicts"], read["page"]
    parts = [(v["srcUrl"], name, v[name]) for v in verdicts for name in ("badge", "card") if v[name]]
    for src, name, rect in parts:
        covered = [text for text in page["text"] if overlap(rect, text) > 0]
        assert not covered, f"the {name} of {src} covers the page's text at {covered[:2]}"
        others = [(s, n) for s, n, r in parts if (s, n) != (src, name) and overlap(rect, r) > 0]
        assert not others, f"the {name} of {src} overlaps {others}"
    for verdict in verdicts:
        image, badge = verdict["image"], verdict["badge"]
        if min(image["width"], image["height"]) >= 200:
            assert overlap(badge, image) == badge["width"] * badge["height"], "a large image's badge lies on it"
            assert badge["width"] * badge["height"] <= 0.15 * image["width"] * image["height"]
        else:
            assert overlap(badge, image) == 0, f"the badge of the small {verdict['srcUrl']} lies beside it"
        if verdict["card"]:
            assert overlap(verdict["card"], image) == 0, "the card does not hide its image"


@pytest.mark.browser
@pytest.mark.slow
def test_badges_on_a_profile_page_are_small_beside_thumbnails_and_clear_of_text(profile):
    read, shots = profile[0]["badges"], profile[3]
    assert {v["srcUrl"].rsplit("/", 1)[1] for v in read["verdicts"]} == set(ALL_IMAGES)
    assert all(v["attribute"] is not None and v["card"] is None for v in read["verdicts"])
    check_layout(read)
    assert (shots / "profile-badges.png").stat().st_size > 10_000


@pytest.mark.browser
@pytest.mark.slow
def test_cards_open_on_click_with_plain_words_and_keep_clear(profile):
    read = profile[0]["cards"]
    opened = {v["srcUrl"].rsplit("/", 1)[1]: v for v in read["verdicts"] if v["card"]}
    assert set(opened) == {"avatar.jpg", "friend2.png"}
    check_layout(read)
    for verdict in opened.values():
        probability = float(verdict["attribute"])
        words = rule.describe(probability, shipped_threshold())
        assert words["label"] in verdict["text"] and words["meaning"] in verdict["text"]
        assert words["explanation"] in verdict["text"]
        assert "Checked in this browser" in verdict["text"]
        assert "threshold" not in verdict["text"].lower()


@pytest.mark.browser
@pytest.mark.slow
def test_scored_faces_are_outlined(profile):
    gallery = next(v for v in profile[0]["badges"]["verdicts"] if v["srcUrl"].endswith("gallery.png"))
    verdict = profile[0]["checks"]["gallery.png"]
    assert verdict["scored"] == "faces" and len(gallery["faces"]) == len(verdict["faces"]) >= 1
    image = gallery["image"]
    scale = image["width"] / verdict["width"]
    for outline, face in zip(gallery["faces"], verdict["faces"], strict=True):
        box = face["box"]
        np.testing.assert_allclose([outline["left"] - image["left"], outline["top"] - image["top"], outline["width"]],
                                   [box["x"] * scale, box["y"] * scale, box["width"] * scale], atol=1)


@pytest.mark.browser
@pytest.mark.slow
def test_the_page_cannot_read_or_rewrite_the_verdict(profile):
    hosts = profile[0]["seen_by_page"]["value"]
    assert len(hosts) == len(ALL_IMAGES)
    assert all(host == {"shadowRoot": None, "text": "", "attributes": [], "marked": 0} for host in hosts)


@pytest.mark.browser
@pytest.mark.slow
def test_the_page_cannot_hide_or_restyle_our_badges_and_the_toolbar_repeats_the_verdict(profile):
    named = profile[0]
    restyled = named["restyled"]["verdicts"]
    assert len(restyled) == len(ALL_IMAGES)
    assert all(v["badge"] and v["badge"]["width"] > 20 and v["badge"]["height"] > 10 for v in restyled), restyled
    # Where no page can draw: the last verdict in the tab (gallery.png, checked last), in words.
    toolbar, last = named["toolbar"], named["checks"]["gallery.png"]["words"]
    marks = {"declared_ai": "AI", "likely_ai": "AI", "inconclusive": "?", "no_sign": "no"}
    assert toolbar["text"] == marks[last["code"]]
    assert toolbar["title"] == f"AI face check, latest in this tab: gallery.png: {last['label']}, {last['percent']}"


@pytest.mark.browser
@pytest.mark.slow
def test_a_verdict_goes_when_the_page_swaps_its_images_file(profile):
    before = {v["srcUrl"].rsplit("/", 1)[1] for v in profile[0]["restyled"]["verdicts"]}
    after = {v["srcUrl"].rsplit("/", 1)[1] for v in profile[0]["swapped_src"]["verdicts"]}
    assert "friend1.png" in before and after == before - {"friend1.png"}


@pytest.mark.browser
@pytest.mark.slow
def test_an_unreachable_service_falls_back_to_the_browser_and_says_so(profile):
    verdict = profile[0]["unreachable"]["verdict"]
    assert verdict["where"] == "local" and "probability" in verdict
    assert "could not be reached" in verdict["note"] and "checked in this browser instead" in verdict["note"]
    assert "scaled down" in verdict["note"]


@pytest.mark.browser
@pytest.mark.slow
def test_why_explains_an_image_checked_in_the_browser(profile):
    named, output = profile[0], profile[1]
    assert named["before_why"]["verdict"]["where"] == "local"
    post = next(v for v in named["why"]["verdicts"] if v["srcUrl"].endswith("post.jpg"))
    assert post["toggle"] == "Hide why" and post["overlay"]["shown"]
    assert post["overlay"]["png"] == {"width": 32, "height": 32}
    np.testing.assert_allclose([post["overlay"][k] for k in ("left", "top", "width", "height")],
                               [post["image"][k] for k in ("left", "top", "width", "height")], atol=0.5)
    assert "not a map of fake pixels" in post["text"] and "scored it 93.0 %" in post["text"]
    assert "sent to your detection service only to explain it" in post["text"]
    assert "the image did not leave this computer" not in post["text"]
    assert output["uploads"][0]["query"] == "?explain=1"


@pytest.mark.browser
@pytest.mark.slow
def test_uploads_are_re_encoded_without_metadata(profile):
    from email.parser import BytesParser

    from PIL import Image

    output, site = profile[1], profile[2]
    source = (site / "post.jpg").read_bytes()
    assert b"SecretCam" in source and Image.open(io.BytesIO(source)).info.get("icc_profile")
    assert len(output["uploads"]) == 5  # Why?, then the large image three times; never to http://example.test
    for upload in output["uploads"]:
        body = base64.b64decode(upload["body"])
        message = BytesParser().parsebytes(f"Content-Type: {upload['contentType']}\r\n\r\n".encode() + body)
        (part,) = message.get_payload()
        sent = part.get_payload(decode=True)
        image = Image.open(io.BytesIO(sent))
        assert image.format == "PNG" and image.size == (192, 192)
        assert not image.getexif() and set(image.info) <= {"dpi", "srgb", "gamma"}, image.info
        assert b"SecretCam" not in body and b"Rua Secreta" not in body and upload["cookie"] is None


@pytest.mark.browser
@pytest.mark.slow
def test_a_file_other_than_the_one_shown_is_caught_and_the_image_as_shown_checked(profile):
    named = profile[0]
    for name, verdict in named["checks"].items():
        if name != "swapped.jpg":
            assert verdict["compared"]["match"] and verdict["compared"]["difference"] < 10, (name, verdict["compared"])
            assert "different file" not in (verdict["note"] or "")
    swapped = named["swapped"]["verdict"]
    assert swapped["compared"] == {"match": False, "difference": pytest.approx(swapped["compared"]["difference"])}
    assert swapped["compared"]["difference"] > 20
    assert "sent the extension a different file from the image on the page" in swapped["note"]
    assert (swapped["width"], swapped["height"]) == (256, 256), "the rendered pixels, not the 300 px file, were checked"
    assert not swapped["canExplain"] and "would get the file the site sends" in swapped["explainHint"]
    # Faces found in the rendered pixels are outlined where they are on the page.
    (drawn,) = named["swapped_read"]["verdicts"]
    image, face = drawn["image"], swapped["faces"][0]["box"]
    assert swapped["scored"] == "faces" and len(drawn["faces"]) == 1
    np.testing.assert_allclose([drawn["faces"][0]["left"] - image["left"], drawn["faces"][0]["top"] - image["top"]],
                               [face["x"], face["y"]], atol=1)


@pytest.mark.browser
@pytest.mark.slow
def test_images_are_fetched_without_the_sites_cookies_or_the_page(profile):
    requests = profile[1]["requests"]
    by_page = [r for r in requests if r["sec-fetch-dest"] == "image"]
    by_extension = [r for r in requests if r["sec-fetch-dest"] == "empty"]
    assert by_page and all(r["cookie"] == "session=secret-session-id" for r in by_page), "the page's own loads carry it"
    assert len(by_extension) >= len(ALL_IMAGES)
    assert all(r["cookie"] is None and r["referer"] is None for r in by_extension), by_extension[:2]


@pytest.mark.browser
@pytest.mark.slow
def test_the_services_reply_is_checked_before_it_is_shown(profile):
    named = profile[0]
    good = named["on_service"]["verdict"]
    assert good["where"] == "server" and good["probability"] == 0.93 and good["words"]["code"] == "likely_ai"
    reasons = {"bad_number": "probability_fake is not a number from 0 to 1",
               "bad_box": "face 0 is not a box inside the image",
               "bad_png": "explanation.png_base64 is not a base64 PNG"}
    for name, reason in reasons.items():
        verdict = named[name]["verdict"]
        assert verdict["where"] == "local", verdict
        assert f"sent an answer that cannot be used ({reason})" in verdict["note"]
    refused = named["plain_http"]["verdict"]
    assert refused["where"] == "local" and "must use https://" in refused["note"]
