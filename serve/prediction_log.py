"""Every prediction, appended to the Redis stream `vgsales:predictions`.

The request thread only puts a tuple on a bounded in-memory queue; a daemon
thread per worker serialises entries and appends them in batches with
`ml.monitoring.stream.append`, which keeps the stream under its byte cap.
Nothing is lost without being counted: a full queue, an unreachable Redis
or the cap drops entries, and their predictions are added to
`vgsales_prediction_log_dropped_total` here and to the stream's dropped
counter in Redis (which the drain reports), carried over until Redis can be
told. Predictions never wait for, or fail because of, the log.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ml.monitoring.stream import append, encode_entry

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000
# Predictions waiting in one worker at most: a flood of large batches must not
# grow the worker's memory any more than the stream's (the byte cap).
QUEUE_ROWS = 100_000
BATCH = 256
# How long the thread waits, once an entry has come, before it takes the
# queue. The request that queued it is still writing its answer: gunicorn
# sends the head and the body in two calls, and this thread taking the GIL
# between them would widen the moment at which a killed worker leaves nginx
# a head without a body, an answer no proxy can retry (docs/faults_and_security.md).
LINGER_SECONDS = 0.002
# Back-off between attempts while Redis is unreachable.
RETRY_SECONDS = (0.5, 1, 2, 5, 10)


class PredictionLog:
    """Fire-and-forget prediction logging for one worker process."""

    def __init__(
        self,
        redis_url: str,
        max_bytes: int,
        on_written: Callable[[int], None] = lambda n: None,
        on_dropped: Callable[[int], None] = lambda n: None,
    ) -> None:
        """`on_written` and `on_dropped` receive numbers of predictions."""
        self._url = redis_url
        self._max_bytes = max_bytes
        # Predictions dropped here that Redis's dropped counter does not hold yet.
        self._carried = 0
        self._queued_rows = 0
        self._counts_lock = threading.Lock()
        self._on_written = on_written
        self._on_dropped = on_dropped
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._start_lock = threading.Lock()

    def record(
        self,
        endpoint: str,
        request_id: str,
        model: str,
        version: str,
        features: Sequence[dict],
        predictions: Sequence[float],
        unseen: Sequence[list[str]],
    ) -> None:
        """Queue one entry; drop it (counted) if the queue is full (entries or rows)."""
        self._ensure_thread()
        entry = (time.time(), endpoint, request_id, model, version, features, predictions, unseen)
        rows = len(predictions)
        with self._counts_lock:
            room = self._queued_rows + rows <= QUEUE_ROWS
            if room:
                self._queued_rows += rows
        if room:
            try:
                self._queue.put_nowait(entry)
                return
            except queue.Full:
                with self._counts_lock:
                    self._queued_rows -= rows
        self._on_dropped(rows)
        with self._counts_lock:
            self._carried += rows

    def flush(self, timeout: float = 2.0) -> None:
        """Wait up to `timeout` seconds for queued entries to be written."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _ensure_thread(self) -> None:
        # The thread is started by the process that logs (a forked worker),
        # never inherited from a parent where it would not run.
        if self._pid == os.getpid():
            return
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()
            self._pid = os.getpid()
            atexit.register(self.flush)

    def _run(self) -> None:
        # No client-side retries: this loop backs off and drops instead.
        client = redis.Redis.from_url(
            self._url, socket_connect_timeout=0.5, socket_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
        )
        failures = 0
        while True:
            batch = [self._queue.get()]
            time.sleep(LINGER_SECONDS)
            while len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = sum(len(entry[6]) for entry in batch)
            with self._counts_lock:
                carried, self._carried = self._carried, 0
                self._queued_rows -= rows
            try:
                written, refused = append(
                    client, [(encode_entry(*entry), len(entry[6])) for entry in batch],
                    max_bytes=self._max_bytes, carried_drops=carried,
                )
                self._on_written(written)
                if refused:
                    self._on_dropped(refused)
                failures = 0
            except redis.RedisError as error:
                self._on_dropped(rows)
                with self._counts_lock:
                    self._carried += carried + rows
                if failures == 0:
                    log.warning("prediction log: Redis unavailable (%s); dropping entries", error)
                time.sleep(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)])
                failures += 1
            finally:
                for _ in batch:
                    self._queue.task_done()
