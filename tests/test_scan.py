"""`aiface scan`: many images through the service's path into results.jsonl, results.csv and report.html."""

from __future__ import annotations

import csv
import json
import re

import pytest

from aiface.scan import console, main
from helpers import encode, face_like
from test_faces import face_filling, scene, two_faces_scene


@pytest.fixture
def photos(tmp_path):
    """A folder of images (one in a sub-folder), a truncated one, a text file named .png, and a README."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "scene.png").write_bytes(encode(scene()))
    (folder / "two.jpg").write_bytes(encode(two_faces_scene(), "JPEG", quality=92))
    (folder / "sub" / "filling.png").write_bytes(encode(face_filling()))
    (folder / "plain.webp").write_bytes(encode(face_like(3, size=96), "WEBP", lossless=True))
    (folder / "cut.jpg").write_bytes(encode(scene(), "JPEG")[:700])
    (folder / "notes.png").write_bytes(b"not an image at all")
    (folder / "README.md").write_text("not scanned: not an image's name")
    return folder


def answer_of(row: dict) -> dict:
    """The answer in a scan row or a service body: what both must agree on, probabilities to 1e-5."""
    def rounded(value):
        if isinstance(value, float):
            return round(value, 5)
        if isinstance(value, dict):
            return {key: rounded(item) for key, item in value.items()}
        return [rounded(item) for item in value] if isinstance(value, list) else value

    return rounded({key: value for key, value in row.items() if key not in ("path", "sha256", "error", "elapsed_ms")})


def rows_of(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def scan(*argv) -> int:
    return main([*map(str, argv), "--quiet"])


def test_a_folder_is_scanned_and_every_bad_file_is_a_row(photos, tiny_model_path, tmp_path, client):
    before = sorted(p.name for p in photos.rglob("*"))
    out = tmp_path / "audit"
    assert scan(photos, "--out", out, "--model", tiny_model_path) == 0
    rows = {row["path"].removeprefix(str(photos) + "/"): row for row in rows_of(out)}
    assert set(rows) == {"scene.png", "two.jpg", "sub/filling.png", "plain.webp", "cut.jpg", "notes.png"}
    assert rows["cut.jpg"]["error"]["code"] == "corrupt" and "truncated" in rows["cut.jpg"]["error"]["message"]
    assert rows["notes.png"]["error"] == {"code": "not_image", "message": "not an image in a format we can read"}
    # The service's answer for the same bytes.
    for name in ("scene.png", "two.jpg", "sub/filling.png", "plain.webp"):
        body = client.post("/v1/detect", data=(photos / name).read_bytes(), content_type="image/png").json
        assert answer_of(rows[name]) == answer_of(body), name
        assert rows[name]["model"]["name"] == "tiny-test" and len(rows[name]["sha256"]) == 64
    assert len(rows["two.jpg"]["faces"]) == 2 and rows["plain.webp"]["scored"] == "whole_image"
    with (out / "results.csv").open() as handle:
        table = {row["path"]: row for row in csv.DictReader(handle)}
    assert table[str(photos / "cut.jpg")]["error_code"] == "corrupt"
    assert float(table[str(photos / "scene.png")]["probability_fake"]) == rows["scene.png"]["probability_fake"]
    page = (out / "report.html").read_text()
    assert "6 inputs: 4 scored, 2 could not be read" in page and "<svg" in page
    assert page.count("data:image/jpeg;base64,") == 4 and "not an image in a format we can read" in page
    assert not re.search(r"(src|href)=['\"]?https?:", page)  # self-contained
    assert sorted(p.name for p in photos.rglob("*")) == before  # nothing written beside the inputs
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "results.csv", "results.jsonl"]


def test_resume_skips_what_was_scanned_and_rescans_what_changed(photos, tiny_model_path, tmp_path):
    out = tmp_path / "audit"
    first = [photos / "scene.png", photos / "plain.webp"]
    assert scan(*first, "--out", out, "--model", tiny_model_path) == 0
    # Again without --resume: refused, the earlier results kept.
    assert scan(*first, "--out", out, "--model", tiny_model_path) == 2
    kept = rows_of(out)
    # An interrupted scan leaves half a line; a changed file is scanned again.
    with (out / "results.jsonl").open("a") as handle:
        handle.write('{"path": "half')
    (photos / "plain.webp").write_bytes(encode(face_like(4, size=96), "PNG"))
    assert scan(*first, photos / "two.jpg", "--out", out, "--model", tiny_model_path, "--resume") == 0
    rows = rows_of(out)
    assert rows[0] == kept[0]  # unchanged: kept; the changed file's old row replaced by its new one
    assert [row["path"] for row in rows[1:]] == [str(photos / "plain.webp"), str(photos / "two.jpg")]
    assert rows[1]["sha256"] != kept[1]["sha256"]


def test_lists_and_globs_name_inputs(photos, tiny_model_path, tmp_path):
    (tmp_path / "list.txt").write_text("# profile photos\nphotos/scene.png\n\nphotos/missing.jpg\n")
    (tmp_path / "list.csv").write_text("id,path\n1,photos/two.jpg\n2,photos/scene.png\n")
    out = tmp_path / "audit"
    assert scan(tmp_path / "list.txt", tmp_path / "list.csv", f"{photos}/**/*.png", "--out", out,
                "--model", tiny_model_path) == 0
    paths = [row["path"] for row in rows_of(out)]
    assert paths == [str(tmp_path / "photos/scene.png"), str(tmp_path / "photos/missing.jpg"),
                     str(tmp_path / "photos/two.jpg"), str(photos / "notes.png"), str(photos / "sub/filling.png")]
    assert rows_of(out)[1]["error"]["code"] == "unreadable"


def test_usage_errors_exit_2_with_one_line(tmp_path, tiny_model_path, capsys):
    assert scan(tmp_path / "nowhere", "--out", tmp_path / "out", "--model", tiny_model_path) == 2
    assert capsys.readouterr().err.strip() == f"aiface scan: error: {tmp_path / 'nowhere'} does not exist"
    assert scan(f"{tmp_path}/*.jpg", "--out", tmp_path / "out") == 2
    assert scan(tmp_path, "--out", tmp_path / "out", "--model", tmp_path / "none.keras") == 2
    assert "none.json does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--out", str(tmp_path / "o"), "--batch-size", "0"])
    assert exit_info.value.code == 2
    assert console(["score", "x"]) == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.process
def test_the_ray_engine_writes_the_local_scans_results(photos, tiny_model_path, tmp_path):
    ray = pytest.importorskip("ray", reason="the scale extra is not installed (pip install '.[scale]')")
    local, distributed = tmp_path / "local", tmp_path / "ray"
    assert scan(photos, "--out", local, "--model", tiny_model_path) == 0
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        assert scan(photos, "--out", distributed, "--model", tiny_model_path, "--engine", "ray", "--workers", "1") == 0
    finally:
        ray.shutdown()
    expected, got = rows_of(local), rows_of(distributed)
    assert [row["path"] for row in got] == [row["path"] for row in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.pop("probability_fake", None) == pytest.approx(theirs.pop("probability_fake", None), abs=1e-6)
        for face in mine.get("faces", []) + theirs.get("faces", []):
            face["probability_fake"] = round(face["probability_fake"], 5)
        assert mine == theirs


# --- the same answer as the service ----------------------------------------------------------------------------


def test_the_scan_answers_as_the_service_on_every_provenance_channel(tiny_model_path, tmp_path):
    """PNG Stable Diffusion parameters, XMP, C2PA and EXIF Software each declare AI: the scan says so as the
    service does, with the same trust list; files declaring nothing or a capture get the same answer too."""
    from provenance_fixtures import exif_jpeg, fixtures, trusted_root
    from server import create_app

    folder = tmp_path / "declared"
    folder.mkdir()
    files = {name: data for name, (data, _) in fixtures().items()}
    files["exif_midjourney.jpg"] = exif_jpeg(Software="Midjourney v6")
    for name, data in files.items():
        (folder / name).write_bytes(data)
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(trusted_root())
    out = tmp_path / "audit"
    assert scan(folder, "--out", out, "--model", tiny_model_path, "--trust-anchors", anchors) == 0
    rows = {row["path"].rsplit("/", 1)[-1]: row for row in rows_of(out)}
    client = create_app({"MODEL_PATH": str(tiny_model_path), "TRUST_ANCHORS": str(anchors)}).test_client()
    for name, data in files.items():
        body = client.post("/v1/detect", data=data, content_type="image/png").json
        assert answer_of(rows[name]) == answer_of(body), name
    for name in ("a1111.png", "xmp_ai.jpg", "c2pa_ai.jpg", "exif_midjourney.jpg"):
        assert (rows[name]["verdict"], rows[name]["label"]) == ("declared_ai", "fake"), name
    expected = {name: status for name, (_, status) in fixtures().items()}
    assert {name: row["provenance"]["status"] for name, row in rows.items() if name in expected} == expected
    with (out / "results.csv").open() as handle:
        table = {row["path"].rsplit("/", 1)[-1]: row for row in csv.DictReader(handle)}
    assert table["a1111.png"]["provenance"] == "declared_ai" and "Stable Diffusion" in table["a1111.png"]["declared_by"]
    assert "AI-generated, declared by the file" in (out / "report.html").read_text()
