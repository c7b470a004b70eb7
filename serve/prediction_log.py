"""Every prediction, appended to the Redis stream `vgsales:predictions`.

The request thread only counts the prediction and puts a tuple on a bounded
in-memory queue; a daemon thread per worker serialises entries and appends
them in batches with `ml.monitoring.stream.append` (one round trip each).
After the first entry of a batch it lingers a moment for more, so that a
trickle of requests shares round trips too. Appending before answering
would cost every request a round trip and its latency, which measured worse
(docs/faults_and_security.md).

Nothing is lost without being counted, not even by a kill -9:

- the byte cap, a full queue, a failing Redis (unreachable, out of memory,
  without the stream's functions): the predictions are added to
  `vgsales_prediction_log_dropped_total` and recorded in the stream as drop
  records (at most one per reason and second per worker), carried until
  Redis takes them;
- what a killed worker held in memory: each worker counts the predictions
  it recorded and settled in a file that outlives it
  (`serve.prediction_counts`); a worker of any instance logging to the same
  stream adopts a dead worker's difference within seconds and records it as
  dropped (`worker_lost`; `worker_in_flight` for the append it was waiting
  on, which may have reached the stream).

After a failure, the thread backs off and drops. Predictions never wait for,
or fail because of, the log.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ml.monitoring.stream import BYTE_CAP, UNAVAILABLE, FunctionsMissing, append, encode_entry
from serve.prediction_counts import PredictionCounts

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000
# Predictions waiting in one worker at most: a flood of large batches must not
# grow the worker's memory any more than the stream's (the byte cap).
QUEUE_ROWS = 100_000
BATCH = 256
# How long the thread waits, once an entry has come, before it takes the
# queue: the entries that arrive meanwhile go in the same FCALL. It sleeps
# rather than waking for each of them, because the request that queued an
# entry is still writing its answer: gunicorn sends the head and the body in
# two calls, and this thread taking the GIL between them would widen the
# moment at which a killed worker leaves nginx a head without a body, an
# answer no proxy can retry (docs/faults_and_security.md).
LINGER_SECONDS = 0.02
# Back-off between attempts while Redis fails.
RETRY_SECONDS = (0.5, 1, 2, 5, 10)
# Drop records per reason and worker, at most one this often (a stream at its
# cap would otherwise fill with them).
DROP_RECORD_SECONDS = 1.0
# How often the thread looks for dead workers' counts (an idle one wakes for it).
ADOPT_SECONDS = 2.0
QUEUE_FULL = "queue_full"
WORKER_LOST = "worker_lost"
# Of a killed worker's append waiting for Redis's answer: landed or lost.
WORKER_IN_FLIGHT = "worker_in_flight"


class PredictionLog:
    """Fire-and-forget prediction logging for one worker process."""

    def __init__(
        self,
        redis_url: str,
        max_bytes: int,
        on_written: Callable[[int], None] = lambda n: None,
        on_dropped: Callable[[int], None] = lambda n: None,
        counts_dir: Path | None = None,
    ) -> None:
        """`on_written` and `on_dropped` receive numbers of predictions.

        With `counts_dir`, the worker keeps its counts there, so that what a
        killed worker held is counted by another (serve.prediction_counts).
        """
        self._url = redis_url
        self._max_bytes = max_bytes
        self._on_written = on_written
        self._on_dropped = on_dropped
        self._counts_dir = counts_dir
        self._counts: PredictionCounts | None = None
        self._queued_rows = 0
        # Predictions dropped, by reason, that no drop record holds yet.
        self._carried: collections.Counter[str] = collections.Counter()
        self._counts_lock = threading.Lock()
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
        if self._counts is not None:
            self._counts.add_recorded(rows)
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
            self._carried[QUEUE_FULL] += rows

    def flush(self, timeout: float = 2.0) -> None:
        """Wait up to `timeout` seconds until every queued entry is written
        and every drop is recorded (or Redis has failed on them)."""
        if self._pid != os.getpid():
            return
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(None, timeout=timeout)  # carried drop records, now
        except queue.Full:
            return
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
            if self._counts_dir is not None:
                self._counts = PredictionCounts(self._counts_dir)
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()
            self._pid = os.getpid()
            atexit.register(self._exit)

    def _exit(self) -> None:
        self.flush()
        if self._counts is not None:
            self._counts.close()

    def _run(self) -> None:
        # No client-side retries: this loop backs off and drops instead.
        client = redis.Redis.from_url(
            self._url, socket_connect_timeout=0.5, socket_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
        )
        writer = _Writer(client, self._max_bytes, self._on_written, self._counts)
        adopt_at = 0.0
        while True:
            batch = self._next_batch()
            rows = sum(len(entry[6]) for entry in batch if entry is not None)
            with self._counts_lock:
                self._queued_rows -= rows
                writer.carried += self._carried
                self._carried.clear()
            if self._counts is not None and time.monotonic() >= adopt_at:
                adopt_at = time.monotonic() + ADOPT_SECONDS
                lost, in_flight = self._counts.adopt_dead()
                if lost or in_flight:
                    log.warning("prediction log: dead workers left %s predictions unlogged and "
                                "%s waiting for Redis's answer; recording them as dropped",
                                lost, in_flight)
                    self._on_dropped(lost + in_flight)
                    writer.carried[WORKER_LOST] += lost
                    writer.carried[WORKER_IN_FLIGHT] += in_flight
            try:
                dropped = writer.write([entry for entry in batch if entry is not None],
                                       force_records=None in batch)
                if dropped:
                    self._on_dropped(dropped)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _next_batch(self) -> list:
        """The entries to write next: the first one, those queued within
        LINGER_SECONDS after it, up to BATCH; empty after ADOPT_SECONDS without any."""
        try:
            batch = [self._queue.get(timeout=ADOPT_SECONDS)]
        except queue.Empty:
            return []
        if batch[0] is not None:
            time.sleep(LINGER_SECONDS)
        while len(batch) < BATCH and batch[-1] is not None:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch


class _Writer:
    """The log thread's Redis side: appends, drop records, back-off and counts."""

    def __init__(self, client: redis.Redis, max_bytes: int, on_written: Callable[[int], None],
                 counts: PredictionCounts | None) -> None:
        self.client, self.max_bytes, self.on_written, self.counts = (
            client, max_bytes, on_written, counts)
        self.carried: collections.Counter[str] = collections.Counter()
        self.records_due = 0.0
        self.retry_at = 0.0
        self.failures = 0

    def write(self, batch: list[tuple], *, force_records: bool) -> int:
        """Append `batch`, with the carried drop records when due (with
        `force_records`, now, including what this append drops); return the
        predictions dropped by this attempt."""
        dropped = self._append(batch, force_records)
        if force_records and +self.carried and time.monotonic() >= self.retry_at:
            dropped += self._append([], force_records)
        return dropped

    def _append(self, batch: list[tuple], force_records: bool) -> int:
        rows = sum(len(entry[6]) for entry in batch)
        now = time.monotonic()
        if now < self.retry_at:
            self.carried[UNAVAILABLE] += rows
            return rows
        records = (dict(+self.carried) if self.carried
                   and (force_records or now >= self.records_due) else {})
        if not batch and not records:
            return 0
        if self.counts is not None:
            self.counts.sent(rows + sum(records.values()))
        try:
            written, refused = append(
                self.client, [(encode_entry(*entry), len(entry[6])) for entry in batch],
                max_bytes=self.max_bytes, drops=records,
            )
        except Exception as error:  # the thread must outlive any failure
            if self.counts is not None:
                self.counts.answered(0)
            self.carried[UNAVAILABLE] += rows
            self._fail(error)
            return rows
        self.failures = 0
        if records:
            self.carried -= collections.Counter(records)
            self.records_due = now + DROP_RECORD_SECONDS
        if self.counts is not None:
            self.counts.answered(written + sum(records.values()))
        self.on_written(written)
        self.carried[BYTE_CAP] += refused
        return refused

    def _fail(self, error: Exception) -> None:
        if self.failures == 0:
            if isinstance(error, FunctionsMissing):
                log.error("prediction log: %s; dropping entries (counted)", error)
            elif isinstance(error, redis.RedisError):
                log.warning("prediction log: Redis failed (%s); dropping entries (counted)",
                            error)
            else:
                log.exception("prediction log: cannot write; dropping entries (counted)")
        time_out = RETRY_SECONDS[min(self.failures, len(RETRY_SECONDS) - 1)]
        self.retry_at = time.monotonic() + time_out
        self.failures += 1
