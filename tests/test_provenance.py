"""Provenance beside pixels: the readers, the combining rule and the service's provenance answer."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib

import pytest

from aiface import provenance_rule as rule
from aiface.bundle import metadata_path
from aiface.provenance import MAX_TEXT_BYTES, load_trust_anchors, read_provenance, read_texts
from provenance_fixtures import A1111, fixtures, picture, png_with_text, sign, trusted_root
from server import StartupError, create_app


@pytest.fixture(scope="module")
def anchors(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("anchors")
    (folder / "newsroom.pem").write_bytes(trusted_root())
    return str(folder)


@pytest.mark.parametrize("name", sorted(fixtures()))
def test_each_fixture_gets_its_status(name, anchors):
    data, status = fixtures()[name]
    assert rule.summarise(read_provenance(data, load_trust_anchors(anchors)))["status"] == status


def test_an_ai_declaring_manifest_names_its_signer_tool_and_source_type():
    found = read_provenance(fixtures()["c2pa_ai.jpg"][0])["c2pa"]
    assert found == {"validation": "valid", "problems": [], "claim_generator": "Imagine 1.0",
                     "signer": {"organization": "Imagine AI Inc", "common_name": "Imagine AI Inc signer"},
                     "digital_source_types": ["http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"]}


def test_a_capture_is_trusted_only_when_its_root_is_on_the_trust_list(anchors):
    data = fixtures()["c2pa_trusted_camera.jpg"][0]
    assert read_provenance(data)["c2pa"]["validation"] == "valid"
    assert read_provenance(data, load_trust_anchors(anchors))["c2pa"]["validation"] == "trusted"
    other = read_provenance(fixtures()["c2pa_camera.jpg"][0], load_trust_anchors(anchors))
    assert other["c2pa"]["validation"] == "valid"  # a signer not on the list stays untrusted


def test_a_file_changed_after_signing_says_why():
    summary = rule.summarise(read_provenance(fixtures()["c2pa_tampered.jpg"][0]))
    assert summary["c2pa"]["validation"] == "invalid"
    assert summary["c2pa"]["problems"] == ["assertion.dataHash.mismatch"]
    assert "assertion.dataHash.mismatch" in summary["line"] and summary["declared_by"] is None


@pytest.mark.parametrize("entry", rule.GENERATORS, ids=lambda entry: entry["name"])
def test_each_known_generator_is_recognised_in_each_of_its_fields(entry):
    samples = {"AUTOMATIC1111 / Forge (Stable Diffusion)": A1111, "ComfyUI": '{"nodes": [], "class_type": "x"}',
               "InvokeAI": '{"app_version": "3.0"}', "NovelAI": "NovelAI", "Midjourney": "Midjourney v6",
               "Adobe Firefly": "Adobe Firefly Image 3", "DALL·E": "DALL-E 3", "Stable Diffusion": "Stable Diffusion 3"}
    for field in entry["fields"]:
        assert rule.generator({field: samples[entry["name"]]}) == {"name": entry["name"], "field": field}
    # An editor's name is no generator, and a generator's text counts only in the fields it writes.
    assert rule.generator({"exif:Software": "Adobe Photoshop 25.0 (Windows)", "png:Comment": samples[entry["name"]]}) \
        is None


def test_png_text_chunks_are_read_plain_compressed_and_international():
    data = png_with_text({"parameters": A1111})
    assert read_texts(data)["png:parameters"] == A1111
    assert read_texts(png_with_text({"prompt": "{}"}, compressed=True))["png:prompt"] == "{}"
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("Software", "NovelAI", lang="en", tkey="Logiciel")
    info.add_itxt("Comment", "é" * 10, zip=True)
    texts = read_texts(picture("PNG", pnginfo=info))
    assert texts["png:Software"] == "NovelAI" and texts["png:Comment"] == "é" * 10


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_a_zip_bomb_in_a_text_chunk_is_inflated_only_to_the_limit():
    bomb = zlib.compress(b"A" * (200 * 1024 * 1024), 9)  # 200 MiB in about 200 KB
    data = picture("PNG")
    data = data[:33] + _chunk(b"zTXt", b"prompt\x00\x00" + bomb) + data[33:]
    assert len(read_texts(data)["png:prompt"]) == MAX_TEXT_BYTES


def test_a_text_chunk_claiming_more_bytes_than_the_file_has_is_ignored():
    data = picture("PNG")
    broken = data[:33] + struct.pack(">I", 1 << 30) + b"tEXtparameters\x00Steps: 1, Sampler: x"
    assert read_texts(broken) == {}


def test_an_unclosed_xmp_packet_is_read_within_its_bound():
    data = picture("JPEG") + b'<x:xmpmeta Iptc4xmpExt:DigitalSourceType="trainedAlgorithmicMedia"' + b" " * 100_000
    assert read_texts(data)["xmp:DigitalSourceType"] == "trainedAlgorithmicMedia"


@pytest.mark.parametrize("damage", ["truncated", "jumbf_garbage", "flipped"])
def test_a_damaged_manifest_gives_a_finding_never_an_exception(damage):
    signed = fixtures()["c2pa_ai.jpg"][0]
    at = signed.find(b"jumb")
    data = {"truncated": signed[: at + 200],
            "jumbf_garbage": signed[: at + 40] + b"\xff" * 64 + signed[at + 104:],
            "flipped": signed[:at] + bytes(b ^ 0xA5 for b in signed[at:at + 300]) + signed[at + 300:]}[damage]
    found = read_provenance(data)["c2pa"]
    assert found is None or found["validation"] in ("invalid", "unreadable")
    summary = rule.summarise(read_provenance(data))
    assert summary["status"] in ("tampered", "none")


def test_the_rule_never_lowers_the_pixel_verdict():
    for name, (data, _) in fixtures().items():
        summary = rule.summarise(read_provenance(data))
        for pixels in ("likely_ai", "inconclusive", "no_sign"):
            shown = rule.combine(pixels, summary)
            assert shown == (rule.DECLARED_AI if summary["status"] == rule.DECLARED_AI else pixels), name


def test_committed_json_is_the_python_definition():
    from pathlib import Path

    committed = Path(__file__).resolve().parents[1] / "extension" / "src" / "provenance.json"
    assert committed.read_text(encoding="utf-8") == rule.rules_json(), (
        "extension/src/provenance.json is stale: run python -m aiface.provenance_rule extension/src/provenance.json")


# --- through the service ------------------------------------------------------


@pytest.fixture(scope="module")
def trusting_client(tiny_model_path, anchors):
    return create_app({"MODEL_PATH": str(tiny_model_path), "TRUST_ANCHORS": anchors}).test_client()


@pytest.mark.parametrize("name", sorted(fixtures()))
def test_the_service_answers_each_fixtures_provenance(trusting_client, name):
    data, status = fixtures()[name]
    body = trusting_client.post("/v1/detect", data=data, content_type="image/octet-stream").json
    provenance = body["provenance"]
    assert provenance["status"] == status
    pixels = "fake" if body["probability_fake"] >= body["threshold"] else "real"
    if status == rule.DECLARED_AI:
        assert body["verdict"] == "declared_ai" and body["label"] == "fake" and provenance["declared_by"]
    else:
        assert body["verdict"] != "declared_ai" and body["label"] == pixels


def test_an_ai_declaration_overrides_a_real_looking_score(tiny_model_path, tmp_path):
    # A threshold no score reaches: the pixels alone would say real.
    path = tmp_path / "strict.keras"
    shutil.copy(tiny_model_path, path)
    metadata = json.loads(metadata_path(tiny_model_path).read_text())
    metadata_path(path).write_text(json.dumps({**metadata, "threshold": 1.0}))
    client = create_app({"MODEL_PATH": str(path)}).test_client()
    declared = client.post("/v1/detect", data=fixtures()["c2pa_ai.jpg"][0], content_type="image/jpeg").json
    assert declared["probability_fake"] < declared["threshold"]
    assert declared["label"] == "fake" and declared["verdict"] == "declared_ai"
    assert declared["provenance"]["declared_by"] == "Content Credentials signed by Imagine AI Inc"
    plain = client.post("/v1/detect", data=fixtures()["plain.png"][0], content_type="image/png").json
    assert plain["label"] == "real" and plain["provenance"] == {
        "status": "none", "declared_by": None, "line": "", "c2pa": None, "digital_source_type": None, "generator": None,
        "watermark": None}


def test_a_batch_gives_each_image_its_own_provenance(trusting_client):
    names = ["c2pa_ai.jpg", "plain.png", "c2pa_tampered.jpg"]
    form = {"image": [(io.BytesIO(fixtures()[name][0]), name) for name in names]}
    results = trusting_client.post("/v1/detect/batch", data=form, content_type="multipart/form-data").json["results"]
    assert [result["provenance"]["status"] for result in results] == ["declared_ai", "none", "tampered"]


def test_a_bad_trust_list_stops_start_up_with_its_reason(tiny_model_path, tmp_path):
    (tmp_path / "notes.pem").write_text("not a certificate")
    with pytest.raises(StartupError, match="TRUST_ANCHORS: .* holds no PEM certificate"):
        create_app({"MODEL_PATH": str(tiny_model_path), "TRUST_ANCHORS": str(tmp_path)})
    with pytest.raises(StartupError, match="TRUST_ANCHORS: cannot read the trust anchors"):
        create_app({"MODEL_PATH": str(tiny_model_path), "TRUST_ANCHORS": str(tmp_path / "missing.pem")})


def test_the_provenance_answer_is_in_the_openapi_document(client):
    document = client.get("/openapi.json").json
    schema = document["components"]["schemas"]
    assert "provenance" in schema["Detection"]["required"]
    assert schema["Provenance"]["properties"]["status"]["enum"] == list(rule.STATUSES)
    assert "declared_ai" in schema["Detection"]["properties"]["verdict"]["enum"]
    assert json.dumps(schema["Provenance"])  # serialisable, documented


def test_signing_fixtures_in_every_format_the_issue_names():
    for fmt in ("JPEG", "PNG", "WEBP", "AVIF"):
        data = sign(picture(fmt), fmt, "trainedAlgorithmicMedia", "Imagine AI Inc", "Imagine")
        assert read_provenance(data)["c2pa"]["validation"] == "valid", fmt
