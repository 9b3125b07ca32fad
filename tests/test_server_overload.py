"""Past capacity the service refuses at once (503 + Retry-After) instead of queueing without bound.

The model is held inside a forward pass by an event, so the queue fills
deterministically: no sleeps, no timing.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from helpers import HeldModel, encode, face_like
from server import StartupError, create_app
from server.batcher import MicroBatcher
from server.exceptions import QueueFull


def held_batcher(max_queue: int) -> tuple[MicroBatcher, HeldModel, object]:
    """A batcher whose inference thread is stuck in its first forward pass."""
    model = HeldModel(answer=0.25)
    batcher = MicroBatcher(model, max_batch_size=16, window_ms=0, max_queue=max_queue)
    first = batcher.submit(np.zeros((1, 1, 3)))
    assert model.started.wait(timeout=30)
    return batcher, model, first


def test_a_full_queue_refuses_at_once_and_recovers():
    batcher, model, first = held_batcher(max_queue=3)
    queued = batcher.submit_many([np.zeros((1, 1, 3))] * 3)
    assert batcher.pending() == 3
    with pytest.raises(QueueFull, match="3 images are already waiting for the model \\(at most 3\\)"):
        batcher.submit(np.zeros((1, 1, 3)))
    model.release.set()
    assert [f.result(timeout=30) for f in [first, *queued]] == [0.25] * 4
    assert batcher.submit(np.zeros((1, 1, 3))).result(timeout=30) == 0.25


def test_inputs_of_one_request_are_queued_all_or_none():
    batcher, model, first = held_batcher(max_queue=4)
    batcher.submit_many([np.zeros((1, 1, 3))] * 2)
    with pytest.raises(QueueFull):
        batcher.submit_many([np.zeros((1, 1, 3))] * 3)
    assert batcher.pending() == 2  # nothing of the refused request was left behind
    model.release.set()


def test_an_empty_queue_takes_a_request_larger_than_the_limit():
    batcher, model, first = held_batcher(max_queue=2)
    futures = batcher.submit_many([np.zeros((1, 1, 3))] * 5)
    model.release.set()
    assert [f.result(timeout=30) for f in futures] == [0.25] * 5


def test_cancelled_inputs_cost_no_forward_pass():
    batcher, model, first = held_batcher(max_queue=8)
    abandoned = batcher.submit_many([np.zeros((1, 1, 3))] * 3)
    kept = batcher.submit(np.zeros((1, 1, 3)))
    for future in abandoned:
        assert future.cancel()
    model.release.set()
    assert kept.result(timeout=30) == 0.25
    assert model.batch_sizes == [1, 1]


def test_the_api_answers_503_with_retry_after_when_the_queue_is_full(tiny_model_path):
    app = create_app(
        {"MODEL_PATH": str(tiny_model_path), "MAX_QUEUE": 2, "BATCH_WINDOW_MS": 0, "INFERENCE_TIMEOUT_S": 60}
    )
    batcher = app.extensions["aiface_detector"]._batcher
    model = HeldModel(answer=0.25)
    batcher._predict = model
    client = app.test_client()
    image = encode(face_like(3))

    held = batcher.submit(np.zeros((32, 32, 3), np.float32))
    assert model.started.wait(timeout=30)
    waiting = batcher.submit_many([np.zeros((32, 32, 3), np.float32)] * 2)
    response = client.post("/v1/detect", data=image, content_type="image/png")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json["error"]["code"] == "overloaded"
    assert "already waiting for the model" in response.json["error"]["message"]

    model.release.set()
    assert [f.result(timeout=30) for f in [held, *waiting]] == [0.25] * 3
    after = client.post("/v1/detect", data=image, content_type="image/png")
    assert after.status_code == 200
    assert after.json["probability_fake"] == 0.25


def test_max_queue_below_one_stops_start_up(tiny_model_path):
    with pytest.raises(StartupError, match="MAX_QUEUE is 0"):
        create_app({"MODEL_PATH": str(tiny_model_path), "MAX_QUEUE": 0})


def test_past_max_in_flight_a_detection_request_gets_503_at_once(tiny_model_path):
    app = create_app({"MODEL_PATH": str(tiny_model_path), "MAX_IN_FLIGHT": 2})
    admission = app.extensions["aiface_admission"]
    client = app.test_client()
    image = encode(face_like(4))
    # Two requests being handled (decoding, finding faces or waiting for the model).
    admission.enter()
    admission.enter()
    refused = client.post("/v1/detect", data=image, content_type="image/png")
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert refused.json["error"]["code"] == "overloaded"
    assert "2 detection requests are already being handled (at most 2)" in refused.json["error"]["message"]
    assert client.post("/v1/detect/batch", data={"image": (io.BytesIO(image), "a.png")}).status_code == 503
    assert client.get("/healthz").status_code == 200  # never refused
    admission.leave()
    assert client.post("/v1/detect", data=image, content_type="image/png").status_code == 200
    admission.leave()
    assert admission.in_flight == 0  # every handled request, refused or not, gave its place back
