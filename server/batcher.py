"""Micro-batching: one thread runs the model on whatever requests are waiting.

A forward pass on a batch of 8 costs far less than 8 passes on one image, and
only one thread ever touches the model, so concurrent requests neither fight
over the CPU cores nor need the model to be thread-safe. The first request to
arrive waits at most ``window_ms`` for company.

The queue is bounded (``max_queue`` inputs): past that, ``submit_many``
refuses at once with ``QueueFull`` so that the service answers 503 in
microseconds instead of letting latency grow without limit.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

from server.exceptions import QueueFull


class MicroBatcher:
    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        max_batch_size: int = 16,
        window_ms: float = 2.0,
        max_queue: int = 64,
    ):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self._predict = predict
        self._max_batch_size = max_batch_size
        self._window_s = window_ms / 1000.0
        self._max_queue = max_queue
        self._waiting: collections.deque = collections.deque()
        self._ready = threading.Condition()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, model_input: np.ndarray) -> Future:
        """Queue one (size, size, 3) input; the future gives its P(fake)."""
        return self.submit_many([model_input])[0]

    def submit_many(self, model_inputs: Sequence[np.ndarray]) -> list[Future]:
        """Queue all inputs or none: raises QueueFull when they do not fit.

        An empty queue takes any number, so that a request larger than the
        queue (a batch upload of large images) is delayed, never refused forever.
        """
        self._ensure_running()
        futures = [Future() for _ in model_inputs]
        with self._ready:
            waiting = len(self._waiting)
            if waiting and waiting + len(futures) > self._max_queue:
                raise QueueFull(
                    f"{waiting} images are already waiting for the model (at most {self._max_queue}); retry shortly"
                )
            self._waiting.extend(zip(model_inputs, futures, strict=True))
            self._ready.notify()
        return futures

    def pending(self) -> int:
        """Inputs queued and not yet taken by the inference thread."""
        with self._ready:
            return len(self._waiting)

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
        with self._start_lock:
            if not self.alive():
                self._thread = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
                self._thread.start()

    def _collect(self) -> list:
        with self._ready:
            self._ready.wait_for(lambda: self._waiting)
            deadline = time.monotonic() + self._window_s
            while len(self._waiting) < self._max_batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._ready.wait(remaining):
                    break
            count = min(len(self._waiting), self._max_batch_size)
            taken = [self._waiting.popleft() for _ in range(count)]
        # A request that gave up (timed out and cancelled its future) costs no forward pass.
        return [(model_input, future) for model_input, future in taken if future.set_running_or_notify_cancel()]

    def _run(self) -> None:
        while True:
            batch = self._collect()
            if not batch:
                continue
            futures = [future for _, future in batch]
            try:
                probabilities = self._predict(np.stack([model_input for model_input, _ in batch]))
            except Exception as error:  # reported to each waiting request, never kills the thread
                for future in futures:
                    future.set_exception(error)
                continue
            for future, probability in zip(futures, probabilities, strict=True):
                future.set_result(float(probability))
