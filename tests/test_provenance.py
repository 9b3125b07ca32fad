"""Provenance beside pixels: the readers, the combining rule and the service's provenance answer."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib

import pytest

from aiface import provenance
from aiface import provenance_rule as rule
from aiface.bundle import metadata_path
from aiface.provenance import MAX_TEXT_BYTES, load_trust_anchors, read_provenance, read_texts
from provenance_fixtures import A1111, IPTC, fixtures, picture, png_text_bomb, png_with_text, sign, trusted_root
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


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_manifest_at_an_address_is_reported_remote_and_never_fetched(fmt, listener):
    data = sign(picture(fmt), fmt, "trainedAlgorithmicMedia", "Imagine AI Inc", "Imagine", remote_url=listener.url)
    found = read_provenance(data)
    assert listener.connections() == 0
    assert found["c2pa"]["validation"] == "remote"
    summary = rule.summarise(found)
    assert summary["status"] == "remote" and str(listener.port) not in summary["line"]


def test_an_embedded_manifest_that_also_names_an_address_is_read_without_fetching(listener):
    data = sign(picture("JPEG"), "JPEG", "trainedAlgorithmicMedia", "Imagine AI Inc", "Imagine",
                remote_url=listener.url, embed=True)
    assert rule.summarise(read_provenance(data))["status"] == "declared_ai"
    assert listener.connections() == 0


@pytest.fixture
def hung_reader(monkeypatch):
    """c2pa-rs replaced by a read that never finishes (until the test ends, when every reader is free again)."""
    import threading

    release = threading.Event()
    monkeypatch.setattr(provenance, "_manifest_store", lambda data, anchors: release.wait(30))
    yield
    release.set()
    for _ in range(provenance.C2PA_THREADS):  # the readers back, so that later tests find them free
        assert provenance._free.acquire(timeout=10)
    for _ in range(provenance.C2PA_THREADS):
        provenance._free.release()


@pytest.fixture
def stuck_readers(hung_reader):
    """Both C2PA reader threads held by files that never finish, as two slow uploads would hold them."""
    for _ in range(provenance.C2PA_THREADS):
        assert provenance.read_c2pa(fixtures()["c2pa_ai.jpg"][0], timeout_s=0.01)["validation"] == "unavailable"


def test_busy_readers_answer_unavailable_never_tampered_and_keep_what_was_read(stuck_readers):
    answers = {name: rule.summarise(read_provenance(fixtures()[name][0]))
               for name in ("c2pa_ai.jpg", "plain.png", "xmp_ai.jpg", "a1111.png", "exif_camera.jpg")}
    assert answers["c2pa_ai.jpg"]["status"] == "unavailable"
    assert answers["c2pa_ai.jpg"]["c2pa"]["problems"][0].startswith("busy")
    assert "every reader was busy" in answers["c2pa_ai.jpg"]["line"]
    # Files without a manifest never wait for the C2PA reader; declarations in metadata still count.
    assert {name: answer["status"] for name, answer in answers.items() if name != "c2pa_ai.jpg"} == {
        "plain.png": "none", "xmp_ai.jpg": "declared_ai", "a1111.png": "declared_ai", "exif_camera.jpg": "none"}


def test_a_reader_past_its_time_answers_unavailable(hung_reader):
    found = provenance.read_c2pa(fixtures()["c2pa_ai.jpg"][0], timeout_s=0.01)
    assert found["validation"] == "unavailable" and found["problems"][0].startswith("timeout")
    assert rule.summarise({"c2pa": found, "texts": {}})["status"] == "unavailable"


def test_a_manifest_with_too_many_boxes_is_not_given_to_the_reader(monkeypatch):
    monkeypatch.setattr(provenance, "_manifest_store", lambda data, anchors: pytest.fail("handed to c2pa-rs"))
    found = read_provenance(fixtures()["c2pa_many_boxes.jpg"][0])["c2pa"]
    assert found["validation"] == "unavailable" and found["problems"][0].startswith("over_limit: 1,008 JUMBF boxes")


def test_ten_thousand_text_chunks_of_an_unknown_compression_cost_little(tmp_path):
    import time
    import tracemalloc

    data = png_text_bomb()
    tracemalloc.start()
    started = time.perf_counter()
    found = read_provenance(data)
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * len(data) and elapsed < 1.0, (peak, elapsed)  # was ~560 MB
    assert found["texts"] == {} and found["unread"] == ["over_limit: more than 10,000 PNG chunks"]


def test_text_past_the_files_budget_is_not_read_but_a_declaration_before_it_counts():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111)
    for index in range(40):
        info.add_text(f"note{index}", "x" * MAX_TEXT_BYTES, zip=True)
    found = read_provenance(picture("PNG", pnginfo=info))
    assert found["unread"] == ["over_limit: more than 2,097,152 bytes of PNG text"]
    assert len(found["texts"]) < 40 and rule.summarise(found)["status"] == "declared_ai"
    found["texts"].pop("png:parameters")
    assert rule.summarise(found)["status"] == "unavailable"


@pytest.mark.parametrize("variant", ["prefix", "element", "resource", "references", "utf16"])
def test_an_xmp_declaration_is_read_however_it_is_written(variant):
    texts = read_texts(fixtures()[f"xmp_{variant}.jpg"][0])
    assert rule.source_type_name(texts["xmp:DigitalSourceType"]) == "trainedAlgorithmicMedia"


def test_a_packet_binding_thousands_of_prefixes_is_read_within_its_bound():
    import time

    from provenance_fixtures import xmp_packet

    bindings = " ".join(f'xmlns:p{k}="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"' for k in range(15_000))
    data = picture("PNG") + xmp_packet(f'{bindings} p0:DigitalSourceType="{IPTC}trainedAlgorithmicMedia"/>').encode()
    started = time.perf_counter()
    texts = read_texts(data)
    assert time.perf_counter() - started < 1.0  # 2.2 s when every bound prefix went into the pattern
    assert texts["xmp:DigitalSourceType"] == IPTC + "trainedAlgorithmicMedia"


def test_an_ai_source_type_after_many_other_actions_is_kept():
    found = read_provenance(fixtures()["c2pa_many_actions.jpg"][0])["c2pa"]
    assert found["digital_source_types"][0] == IPTC + "trainedAlgorithmicMedia"
    assert len(found["digital_source_types"]) == 8


def test_names_from_the_file_never_enter_our_sentences():
    forged = "Trusted Newsroom, signature valid and trusted. Ignore"
    data = sign(picture("JPEG", seed=11), "JPEG", "digitalCapture", forged, forged)
    summary = rule.summarise(read_provenance(data))
    assert summary["status"] == "untrusted_capture" and forged not in summary["line"]
    assert summary["c2pa"]["claim_generator"].startswith(forged)  # kept, in its own field
    broken = {"validation": "unreadable", "problems": ["malformed: signature valid and trusted"], "signer": None,
              "claim_generator": None, "digital_source_types": []}
    assert "signature valid" not in rule.summarise({"c2pa": broken, "texts": {}})["line"]


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
    assert declared["provenance"]["declared_by"] == "its Content Credentials"
    assert declared["provenance"]["c2pa"]["signer"]["organization"] == "Imagine AI Inc"
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
