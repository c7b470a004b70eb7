"""Every prediction, appended to the Redis stream `vgsales:predictions`.

The request thread only puts a tuple on a bounded in-memory queue; a daemon
thread per worker serialises entries and XADDs them in pipelined batches,
trimming the stream to about `MAXLEN` entries. When Redis is slow or down
the queue fills and new entries are dropped (and counted): predictions
never wait for, or fail because of, the log. The entry format is
`ml.monitoring.stream`'s, shared with the drain.
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

from ml.monitoring.stream import MAXLEN, STREAM, encode_entry

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000
BATCH = 256
# Back-off between attempts while Redis is unreachable.
RETRY_SECONDS = (0.5, 1, 2, 5, 10)


class PredictionLog:
    """Fire-and-forget prediction logging for one worker process."""

    def __init__(
        self,
        redis_url: str,
        on_written: Callable[[int], None] = lambda n: None,
        on_dropped: Callable[[int], None] = lambda n: None,
    ) -> None:
        self._url = redis_url
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
        """Queue one entry; drop it (counted) if the queue is full."""
        self._ensure_thread()
        entry = (time.time(), endpoint, request_id, model, version, features, predictions, unseen)
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self._on_dropped(1)

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
            while len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write(client, batch)
                self._on_written(len(batch))
                failures = 0
            except redis.RedisError as error:
                self._on_dropped(len(batch))
                if failures == 0:
                    log.warning("prediction log: Redis unavailable (%s); dropping entries", error)
                time.sleep(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)])
                failures += 1
            finally:
                for _ in batch:
                    self._queue.task_done()

    @staticmethod
    def _write(client: redis.Redis, batch: list[tuple]) -> None:
        with client.pipeline(transaction=False) as pipe:
            for entry in batch:
                pipe.xadd(STREAM, encode_entry(*entry), maxlen=MAXLEN, approximate=True)
            pipe.execute()
