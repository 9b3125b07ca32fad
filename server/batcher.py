"""Micro-batching: one thread runs the model on whatever requests are waiting.

A forward pass on a batch of 8 costs far less than 8 passes on one image, and
only one thread ever touches the model, so concurrent requests neither fight
over the CPU cores nor need the model to be thread-safe. The first request to
arrive waits at most ``window_ms`` for company.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Callable

import numpy as np


class MicroBatcher:
    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        max_batch_size: int = 16,
        window_ms: float = 2.0,
    ):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._predict = predict
        self._max_batch_size = max_batch_size
        self._window_s = window_ms / 1000.0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, model_input: np.ndarray) -> Future:
        """Queue one (size, size, 3) input; the future gives its P(fake)."""
        self._ensure_running()
        future: Future = Future()
        self._queue.put((model_input, future))
        return future

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def healthy(self) -> bool:
        """Not started yet (it starts with the first request) or running."""
        return self._thread is None or self._thread.is_alive()

    def _ensure_running(self) -> None:
        # Started on first use rather than at construction, so that a process
        # forked after create_app (gunicorn --preload) gets its own thread.
        if self.alive():
            return
        with self._lock:
            if not self.alive():
                self._thread = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
                self._thread.start()

    def _collect(self) -> list:
        batch = [self._queue.get()]
        deadline = time.monotonic() + self._window_s
        while len(batch) < self._max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while True:
            batch = self._collect()
            futures = [future for _, future in batch]
            try:
                probabilities = self._predict(np.stack([model_input for model_input, _ in batch]))
            except Exception as error:  # reported to each waiting request, never kills the thread
                for future in futures:
                    future.set_exception(error)
                continue
            for future, probability in zip(futures, probabilities):
                future.set_result(float(probability))
