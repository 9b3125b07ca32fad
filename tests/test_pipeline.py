"""aiface.pipeline, the one inference path: the service, the scan and the evaluation give its answers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from aiface.bundle import load_bundle
from aiface.faces import default_finder
from aiface.pipeline import FACES, WHOLE_IMAGE, detect, detect_many, prepare_many, score
from aiface.preprocess import LoadedImage, load_image
from helpers import EXPECTED_FACE, encode, face_filling, face_like, scene, two_faces_scene

IMAGES = {
    "scene": scene(),
    "two_faces": two_faces_scene(),
    "face_filling": face_filling(),
    "no_face": face_like(5, size=256),
}


def test_the_finder_on_a_batch_finds_what_it_finds_one_image_at_a_time():
    images = list(IMAGES.values()) * 2
    alone = [default_finder().find(pixels) for pixels in images]
    with ThreadPoolExecutor(2) as pool:
        assert default_finder().find_many(images, pool, batch_size=3) == alone
    assert default_finder().find_many([]) == []


@pytest.fixture(scope="module")
def bundle(tiny_model_path):
    return load_bundle(tiny_model_path)


def test_the_service_answers_what_the_pipeline_answers(client, bundle):
    for name, pixels in IMAGES.items():
        data = encode(pixels)
        expected = detect(data, default_finder(), bundle.predict_fake, bundle.metadata.image_size)
        body = client.post("/v1/detect", data=data, content_type="image/png").json
        assert body["probability_fake"] == pytest.approx(expected.probability_fake, abs=1e-6), name
        assert body["scored"] == expected.scored, name
        assert [face["box"] for face in body["faces"]] == [face.box.to_json() for face in expected.faces], name


def test_faces_and_whole_images_are_reported_as_scored(bundle):
    size = bundle.metadata.image_size
    found = {name: detect(encode(pixels), default_finder(), bundle.predict_fake, size)
             for name, pixels in IMAGES.items()}
    assert found["scene"].scored == FACES and len(found["scene"].faces) == 1
    assert len(found["two_faces"].faces) == 2
    assert found["two_faces"].probability_fake == max(face.probability_fake for face in found["two_faces"].faces)
    # A face filling the frame is reported, and the whole centred square scored for it.
    assert found["face_filling"].faces and found["face_filling"].region.width == 256
    assert found["no_face"].scored == WHOLE_IMAGE and found["no_face"].faces == ()
    whole = detect(encode(IMAGES["scene"]), None, bundle.predict_fake, size)
    assert whole.scored == WHOLE_IMAGE and whole.faces == () and whole.region.to_json() == {
        "x": 80, "y": 0, "width": 480, "height": 480}


def test_many_images_in_batches_score_as_each_alone(bundle):
    size = bundle.metadata.image_size
    images = [LoadedImage(pixels) for pixels in IMAGES.values()]
    alone = [detect(encode(image.pixels), default_finder(), bundle.predict_fake, size) for image in images]
    together = detect_many(images, default_finder(), bundle.predict_fake, size, batch_size=2)
    for one, many in zip(alone, together, strict=True):
        assert many.probability_fake == pytest.approx(one.probability_fake, abs=1e-6)
        assert [face.box for face in many.faces] == [face.box for face in one.faces]
        assert many.scored == one.scored


def test_scores_come_back_per_image_in_order():
    prepared = prepare_many([LoadedImage(IMAGES["two_faces"]), LoadedImage(IMAGES["scene"])], default_finder(), 32)
    calls = []

    def predict(batch):
        calls.append(len(batch))
        return batch.reshape(len(batch), -1).mean(axis=1) / 255

    scores = score(prepared, predict, batch_size=2)
    assert [len(s) for s in scores] == [2, 1] and calls == [2, 1]
    assert scores[1][0] == pytest.approx(float(prepared[1].regions[0].input.mean() / 255))


def test_a_large_image_reports_boxes_in_its_full_pixels(bundle):
    # 4480 x 3360: reduced by 2 while decoding (aiface.preprocess, step 1a); the face is found in the reduced copy.
    big = np.asarray(Image.fromarray(IMAGES["scene"]).resize((4480, 3360), Image.BICUBIC))
    image = load_image(encode(big, "BMP"))
    assert image.pixels.shape[:2] == (1680, 2240)
    [detection] = detect_many([image], default_finder(), bundle.predict_fake, bundle.metadata.image_size)
    assert (detection.width, detection.height) == (4480, 3360)
    [face] = detection.faces
    expected = EXPECTED_FACE  # in the 640 x 480 scene, 7 times smaller
    assert abs(face.box.x + face.box.width / 2 - 7 * (expected.x + expected.width / 2)) < 7 * 10


def test_the_evaluation_scores_what_the_service_answers(bundle, tmp_path):
    from training.data.layout import Example
    from training.evaluation.scoring import score_examples

    examples = []
    for index, (name, pixels) in enumerate(IMAGES.items()):
        path = tmp_path / f"{name}.png"
        path.write_bytes(encode(pixels))
        examples.append(Example(path, index % 2, "synth"))
    scores = score_examples(bundle, examples, batch_size=3, finder=default_finder())
    for example, p_fake, what in zip(examples, scores.p_fake, scores.scored, strict=True):
        expected = detect(example.path.read_bytes(), default_finder(), bundle.predict_fake, bundle.metadata.image_size)
        assert p_fake == pytest.approx(expected.probability_fake, abs=1e-6)
        assert what == expected.scored
    assert scores.scored_on_faces == 3
