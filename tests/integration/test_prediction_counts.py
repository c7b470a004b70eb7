"""What a killed worker's prediction log held is counted by another worker.

Real processes, real SIGKILL, real Redis (a db of this test's own): a child
process logs predictions its Redis never takes, is killed, and a
PredictionLog in this process adopts its counts and records them as
`worker_lost` in the stream; a live worker's counts are never adopted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import redis

from ml.monitoring.stream import STREAM, drop_record
from ml.settings import ROOT
from serve.prediction_counts import SUFFIX
from serve.prediction_log import WORKER_IN_FLIGHT, WORKER_LOST, PredictionLog
from tests.helpers import current_run, free_port

REDIS_DB = 10
CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from serve.prediction_log import PredictionLog
    log = PredictionLog(sys.argv[1], max_bytes=1 << 30, counts_dir=Path(sys.argv[2]))
    for number in range(int(sys.argv[3])):
        log.record("/predict", f"doomed-{number}", "global_from_regional", "1",
                   [{"platform": "Wii"}] * 2, [1.0, 2.0], [[], []])
    log.flush(timeout=10)  # the append failed: carried as dropped, never recorded
    print("recorded", flush=True)
    time.sleep(600)
""")


@pytest.fixture
def stream_db(stack_settings):
    db = current_run(stack_settings.run_dir).redis_db(REDIS_DB)
    url = stack_settings.redis_url.rsplit("/", 1)[0] + f"/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url, client
    client.flushdb()
    client.close()


def doomed_worker(redis_url: str, counts_dir, entries: int) -> subprocess.Popen:
    """A process that has recorded `entries` two-prediction entries and sleeps."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, redis_url, str(counts_dir),
                              str(entries)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "recorded"
    return child


def test_a_killed_workers_unlogged_predictions_are_recorded_as_lost(stream_db, tmp_path):
    url, client = stream_db
    # Its Redis is a closed port: everything it records stays unsettled.
    child = doomed_worker(f"redis://127.0.0.1:{free_port()}/0", tmp_path, 5)
    log = PredictionLog(url, max_bytes=1 << 30, counts_dir=tmp_path)
    log.record("/predict", "alive-0", "global_from_regional", "1", [{}], [1.0], [[]])
    log.flush(timeout=10)
    # Alive (its lock held): nothing adopted.
    assert len(list(tmp_path.glob(f"*{SUFFIX}"))) == 2
    assert not [f for _, f in client.xrange(STREAM) if drop_record(f)]
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log.record("/predict", "alive-1", "global_from_regional", "1", [{}], [1.0], [[]])
        log.flush(timeout=10)
        drops = [drop_record(f) for _, f in client.xrange(STREAM) if drop_record(f)]
        if drops:
            break
        time.sleep(0.5)
    # Lost; or, had the kill met an attempt to reach its Redis, in flight.
    assert sum(n for _, n in drops) == 10
    assert {reason for reason, _ in drops} <= {WORKER_LOST, WORKER_IN_FLIGHT}
    assert [p.name for p in tmp_path.glob(f"*{SUFFIX}")] == [log._counts.path.name]
    assert log._counts.pending == 0
