"""Per-worker counts of predictions logged, kept where a kill -9 cannot take them.

A worker's prediction log holds entries in memory before Redis has them (its
queue, the batch in flight, drops not yet recorded). If the worker is
killed, those are gone; so each worker counts, in a small file mapped into
memory, the predictions it recorded, those it settled (appended to the
stream, or counted in a drop record Redis holds) and those of the append
waiting for Redis's answer. Stores into a shared mapping survive the
process: recorded minus settled is what it lost, of which the last batch
sent may have reached the stream or not (a kill during the round trip).

The worker holds an exclusive flock on its file for its life; the lock dies
with the process. Any worker whose log writes to the same stream (the
folder is per Redis server and db) adopts a dead worker's file: it adds the
difference to its own recorded count (so it is never lost in between), then
deletes the file, and records the difference as dropped.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import secrets
import struct
import threading
from pathlib import Path
from urllib.parse import urlsplit

SUFFIX = ".counts"
_LAYOUT = struct.Struct("<QQQ")  # recorded, settled, sent and unanswered


def folder(run_dir: Path, redis_url: str) -> Path:
    """Where the workers logging to `redis_url`'s stream keep their counts:
    one folder per Redis server and db, so that a worker only adopts the
    counts of workers that wrote to the same stream."""
    parts = urlsplit(redis_url)
    db = parts.path.strip("/") or "0"
    return run_dir / "prediction-log" / f"{parts.hostname}-{parts.port or 6379}-{db}"


class PredictionCounts:
    """This process's counts, in a file of `folder` that outlives it."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        # Locked under a name no one looks for, then renamed: a file found
        # by the scan is always locked by a live owner or left by a dead one.
        claimed = folder / f"{name}.new"
        self._fd = os.open(claimed, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        os.ftruncate(self._fd, _LAYOUT.size)
        self._map = mmap.mmap(self._fd, _LAYOUT.size)
        self.path = folder / f"{name}{SUFFIX}"
        os.rename(claimed, self.path)
        self.folder = folder
        self.recorded = 0
        self.settled = 0
        self.sending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Predictions recorded and not yet settled."""
        return self.recorded - self.settled

    def add_recorded(self, predictions: int) -> None:
        with self._lock:
            self.recorded += predictions
            self._store()

    def sent(self, predictions: int) -> None:
        """An append of `predictions` is on its way to Redis."""
        with self._lock:
            self.sending = predictions
            self._store()

    def answered(self, settled: int) -> None:
        """Redis answered the append: `settled` predictions are in the stream."""
        with self._lock:
            self.settled += settled
            self.sending = 0
            self._store()

    def _store(self) -> None:
        _LAYOUT.pack_into(self._map, 0, self.recorded, self.settled, self.sending)

    def adopt_dead(self) -> tuple[int, int]:
        """Take over the unsettled predictions of workers that died.

        Returns (predictions lost, predictions of appends that were waiting
        for Redis's answer: in the stream or lost, no one can tell).
        """
        lost = in_flight = 0
        for path in self.folder.glob(f"*{SUFFIX}"):
            if path == self.path:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its worker lives
                if os.fstat(fd).st_nlink == 0:
                    continue  # another worker adopted it first
                recorded, settled, sending = _LAYOUT.unpack(
                    os.pread(fd, _LAYOUT.size, 0).ljust(_LAYOUT.size, b"\0"))
                unsettled = max(recorded - settled, 0)
                if unsettled:
                    self.add_recorded(unsettled)
                os.unlink(path)
                in_flight += min(sending, unsettled)
                lost += unsettled - min(sending, unsettled)
            finally:
                os.close(fd)
        return lost, in_flight

    def close(self) -> None:
        """At a clean exit: remove the file if nothing is left unsettled,
        otherwise leave it for another worker to adopt."""
        if self.pending == 0:
            self.path.unlink(missing_ok=True)
        self._map.close()
        os.close(self._fd)
