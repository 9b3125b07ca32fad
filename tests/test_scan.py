"""`aiface scan`: many images through the service's path into results.jsonl, results.csv and report.html."""

from __future__ import annotations

import csv
import json
import re

import pytest

from aiface.scan import console, main
from helpers import encode, face_filling, face_like, scene, two_faces_scene


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


# --- a careful scan -------------------------------------------------------------------------------------------


@pytest.fixture
def deadline():
    """Fails a test that blocks for 30 s (a read of a fifo with no writer) instead of hanging the suite."""
    import signal

    def expired(*_):
        raise TimeoutError("the scan blocked")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_a_list_naming_a_device_or_a_fifo_gets_a_row_and_never_hangs(photos, tiny_model_path, tmp_path, deadline,
                                                                     capsys):
    import os

    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    (tmp_path / "list.txt").write_text(f"/dev/zero\n{fifo}\n{photos / 'scene.png'}\n")
    out = tmp_path / "audit"
    assert scan(tmp_path / "list.txt", "--out", out, "--model", tiny_model_path) == 0
    rows = rows_of(out)
    assert [row.get("error", {}) and row["error"]["code"] for row in rows[:2]] == ["not_a_file", "not_a_file"]
    assert "not a regular file" in rows[0]["error"]["message"] and rows[2]["error"] is None
    # Named on the command line: a usage error, before anything is written.
    assert scan(fifo, "--out", tmp_path / "other", "--model", tiny_model_path) == 2
    assert "neither a regular file nor a folder" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_sizes_are_checked_before_reading_and_hashing_is_bounded(photos, tiny_model_path, tmp_path, monkeypatch):
    from aiface import scan_files

    huge = tmp_path / "huge.jpg"
    with huge.open("wb") as handle:  # 3 GiB, sparse: reading it whole would take seconds and gigabytes
        handle.truncate(3 << 30)
    (tmp_path / "list.txt").write_text(f"{huge}\n")
    out = tmp_path / "audit"
    assert scan(tmp_path / "list.txt", "--out", out, "--model", tiny_model_path) == 0
    assert rows_of(out)[0]["error"]["code"] == "too_large" and rows_of(out)[0]["sha256"] is None
    assert scan_files.sha256_of(str(huge), 20 << 20) is None
    # Streamed a block at a time, the digest is the whole file's.
    monkeypatch.setattr(scan_files, "BLOCK", 7)
    data = (photos / "scene.png").read_bytes()
    assert scan_files.sha256_of(str(photos / "scene.png"), len(data)) == __import__("hashlib").sha256(data).hexdigest()
    assert scan_files.sha256_of(str(photos / "scene.png"), len(data) - 1) is None


def test_every_input_has_one_row_however_often_the_scan_is_resumed(photos, tiny_model_path, tmp_path):
    (photos / "big.jpg").write_bytes(bytes(100_001))
    inputs = [photos / "scene.png", photos / "big.jpg", photos / "plain.webp", photos / "missing.jpg"]
    (tmp_path / "list.txt").write_text("".join(f"{path}\n" for path in inputs))
    out = tmp_path / "audit"
    options = ("--out", out, "--model", tiny_model_path, "--max-bytes", 100_000)
    assert scan(tmp_path / "list.txt", *options) == 0
    for round_ in range(3):
        (photos / "plain.webp").write_bytes(encode(face_like(10 + round_, size=96), "PNG"))  # changed each time
        assert scan(tmp_path / "list.txt", *options, "--resume") == 0
        rows = rows_of(out)
        assert sorted(row["path"] for row in rows) == sorted(map(str, inputs)), round_
    codes = {row["path"].rsplit("/", 1)[-1]: (row["error"] or {}).get("code") for row in rows}
    assert codes == {"scene.png": None, "big.jpg": "too_large", "plain.webp": None, "missing.jpg": "unreadable"}
    with (out / "results.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 4


def test_a_resume_with_nothing_left_loads_no_model(photos, tiny_model_path, tmp_path, monkeypatch):
    import aiface.bundle
    import aiface.scan

    out = tmp_path / "audit"
    assert scan(photos / "scene.png", "--out", out, "--model", tiny_model_path) == 0
    before = rows_of(out)

    def no_model(*_args, **_kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(aiface.scan, "Scanner", no_model)
    monkeypatch.setattr(aiface.bundle, "load_bundle", no_model)
    assert scan(photos / "scene.png", "--out", out, "--model", tiny_model_path, "--resume") == 0
    assert rows_of(out) == before


def test_earlier_results_are_never_overwritten_without_asking(photos, tiny_model_path, tmp_path, capsys):
    for name in ("results.csv", "report.html"):
        out = tmp_path / name.replace(".", "_")
        out.mkdir()
        (out / name).write_text("the user's own")
        assert scan(photos / "scene.png", "--out", out, "--model", tiny_model_path) == 2
        assert "--overwrite" in capsys.readouterr().err and (out / name).read_text() == "the user's own"
        assert scan(photos / "scene.png", "--out", out, "--model", tiny_model_path, "--resume") == 2
        assert (out / name).read_text() == "the user's own"
        assert scan(photos / "scene.png", "--out", out, "--model", tiny_model_path, "--overwrite") == 0
        assert len(rows_of(out)) == 1 and (out / name).read_text() != "the user's own"


def test_results_are_never_written_through_a_link(photos, tiny_model_path, tmp_path, capsys):
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("precious")
    out = tmp_path / "audit"
    out.mkdir()
    (out / "results.csv").symlink_to(outside)
    for extra in ((), ("--overwrite",)):
        assert scan(photos / "scene.png", "--out", out, "--model", tiny_model_path, *extra) == 2
        assert "is a link or not a plain file" in capsys.readouterr().err
    assert outside.read_text() == "precious"
    # Even a link made while the scan runs is not followed.
    from aiface.scan_files import write_inside

    with pytest.raises(OSError):
        write_inside(out / "results.csv", "x")
    assert outside.read_text() == "precious"


def test_csv_cells_are_never_formulas(tiny_model_path, tmp_path, monkeypatch):
    from aiface.scan import csv_row

    folder = tmp_path / "named"
    folder.mkdir()
    names = ["=1+2.png", "+SUM(A1).png", "-2.png", "@cmd.png", "plain.png"]
    for name in names:
        (folder / name).write_bytes(encode(face_like(3, size=64)))
    # A list of bare names, read from its folder: each path cell starts with the name itself.
    (folder / "list.txt").write_text("".join(f"{name}\n" for name in names))
    monkeypatch.chdir(folder)
    assert scan("list.txt", "--out", tmp_path / "audit", "--model", tiny_model_path) == 0
    with (tmp_path / "audit" / "results.csv").open(newline="") as handle:
        paths = [row["path"] for row in csv.DictReader(handle)]
    assert paths == ["'=1+2.png", "'+SUM(A1).png", "'-2.png", "'@cmd.png", "plain.png"]
    assert [row["path"] for row in rows_of(tmp_path / "audit")] == names  # the JSON keeps them as they are
    cells = csv_row({"path": "\tx", "model": {"name": "@m", "version": "1"}, "error": {"code": "c", "message": "\ry"}})
    assert (cells["path"], cells["model_name"], cells["error"]) == ("'\tx", "'@m", "'\ry")


def test_the_report_counts_faces_in_words_and_shows_each_bars_count(tmp_path):
    from aiface.scan_report import render

    def row(name, p, faces):
        box = {"x": 0, "y": 0, "width": 10, "height": 10}
        return {"path": str(tmp_path / name), "sha256": "0" * 64, "probability_fake": p, "verdict": "no_sign",
                "faces": [{"box": box, "probability_fake": p}] * faces, "model": {"name": "m", "version": "1"},
                "error": None}

    page = render([row("a.png", 0.01, 1), row("b.png", 0.02, 2), row("c.png", 0.03, 0)], 0.5, 10**6)
    assert "1 face<br>" in page and "2 faces<br>" in page and "0 faces<br>" in page
    # The three fall in the first bin: its count is written over its bar.
    assert re.search(r'text-anchor="middle">3</text>', page)
