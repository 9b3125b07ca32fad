"""Micro-batching and how an upload becomes model inputs, without HTTP."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from aiface.preprocess import to_model_input
from helpers import HeldModel, encode, face_like
from server import create_app
from server.batcher import MicroBatcher


def test_waiting_requests_share_one_forward_pass():
    model = HeldModel()
    batcher = MicroBatcher(model, max_batch_size=16, window_ms=0)
    first = batcher.submit(np.full((2, 2, 3), 1.0))
    assert model.started.wait(timeout=30)
    rest = [batcher.submit(np.full((2, 2, 3), float(value))) for value in range(2, 7)]
    model.release.set()
    assert first.result(timeout=30) == 12.0
    assert [future.result(timeout=30) for future in rest] == [24.0, 36.0, 48.0, 60.0, 72.0]
    assert model.batch_sizes == [1, 5]


def test_batches_never_exceed_the_maximum():
    model = HeldModel()
    batcher = MicroBatcher(model, max_batch_size=2, window_ms=0)
    futures = [batcher.submit(np.zeros((1, 1, 3)))]
    assert model.started.wait(timeout=30)
    futures += [batcher.submit(np.zeros((1, 1, 3))) for _ in range(5)]
    model.release.set()
    assert [future.result(timeout=30) for future in futures] == [0.0] * 6
    assert model.batch_sizes == [1, 2, 2, 1]


def test_a_failing_batch_fails_its_requests_and_the_next_one_succeeds():
    calls = []

    def flaky(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return np.full(len(batch), 0.25)

    batcher = MicroBatcher(flaky, window_ms=0)
    with pytest.raises(RuntimeError, match="out of memory"):
        batcher.submit(np.zeros((1, 1, 3))).result(timeout=30)
    assert batcher.submit(np.zeros((1, 1, 3))).result(timeout=30) == 0.25
    assert batcher.healthy()


def test_concurrent_requests_get_their_own_scores(tiny_model_path):
    app = create_app({"MODEL_PATH": str(tiny_model_path), "BATCH_WINDOW_MS": 20})
    detector = app.extensions["aiface_detector"]
    uploads = [encode(face_like(seed)) for seed in range(8)]
    expected = [detector.bundle.predict_fake(to_model_input(face_like(seed), 32)[None])[0] for seed in range(8)]
    results = [None] * 8

    def score(index):
        results[index] = detector.detect(uploads[index]).probability_fake

    threads = [threading.Thread(target=score, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == pytest.approx(expected, abs=1e-6)


def test_naive_mode_scores_the_same(tiny_model_path):
    batched = create_app({"MODEL_PATH": str(tiny_model_path)}).extensions["aiface_detector"]
    naive = create_app({"MODEL_PATH": str(tiny_model_path), "MICRO_BATCHING": False}).extensions["aiface_detector"]
    data = encode(face_like(11))
    assert naive.detect(data).probability_fake == pytest.approx(batched.detect(data).probability_fake, abs=1e-6)



def test_a_large_image_without_a_face_is_scored_downscaled_in_one_pass(tiny_model_path):
    detector = create_app({"MODEL_PATH": str(tiny_model_path)}).extensions["aiface_detector"]
    large = face_like(5, size=128)  # 4 x the 32 px input
    detection = detector.detect(encode(large))
    assert detection.scored == "whole_image"
    assert detection.probability_fake == pytest.approx(
        detector.bundle.predict_fake(to_model_input(large, 32)[None])[0], abs=1e-6
    )
