"""Snapshots are verified on read: what someone else left in Redis is refused,
and the API and training fall back to the mart in MariaDB.

Each test writes what an attacker with write access to Redis could write:
garbage under a snapshot key, another snapshot's payload, a payload too
large to fetch, a small payload that decompresses to far more.
"""

from __future__ import annotations

import hashlib
import logging

import pandas as pd
import pyarrow as pa
import pytest
from pandas.testing import assert_frame_equal

from ml.warehouse import snapshot
from tests.helpers import isolated_settings

REDIS_DB = 12


@pytest.fixture
def client(stack_settings, tmp_path):
    settings = isolated_settings(stack_settings, "snapshot_tampered", REDIS_DB, tmp_path)
    client = snapshot.connect(settings.redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def frame(n: int = 50, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"release_id": [str(i + offset) for i in range(n)],
                         "year": pd.array(range(n), dtype="Int64")})


def stored_under_its_own_key(client, payload: bytes) -> str:
    key = snapshot.snapshot_key(hashlib.sha256(payload).hexdigest())
    client.set(key, payload)
    return key


def test_garbage_under_its_own_hash_is_refused(client):
    key = stored_under_its_own_key(client, b"\x00garbage, not Arrow" * 100)
    with pytest.raises(snapshot.SnapshotInvalid, match="not an Arrow IPC snapshot"):
        snapshot.fetch(client, key)


def test_a_swapped_payload_is_refused(client):
    key = snapshot.publish(client, frame(), ttl=600)
    other = snapshot.frame_to_ipc(frame(offset=1000))
    client.set(key, other)
    with pytest.raises(snapshot.SnapshotInvalid, match="does not hash to its key"):
        snapshot.fetch(client, key)
    assert snapshot.fetch(client, stored_under_its_own_key(client, other)) is not None


def test_an_oversized_payload_is_refused_before_it_is_fetched(client, monkeypatch):
    key = snapshot.publish(client, frame(), ttl=600)
    monkeypatch.setattr(snapshot, "MAX_PAYLOAD_BYTES", client.strlen(key) - 1)

    def no_get(name):
        raise AssertionError(f"GET {name} sent for an oversized payload")

    monkeypatch.setattr(client, "get", no_get)
    with pytest.raises(snapshot.SnapshotInvalid, match="over"):
        snapshot.fetch(client, key)


def test_a_decompression_bomb_stops_at_the_bound(client, monkeypatch):
    bound = 4 * 1024 * 1024
    monkeypatch.setattr(snapshot, "MAX_FRAME_BYTES", bound)
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, snapshot.CODEC) as stream:
        stream.write(b"\x00" * (16 * bound))
    bomb = sink.getvalue().to_pybytes()
    assert len(bomb) < bound // 100
    key = stored_under_its_own_key(client, bomb)
    with pytest.raises(snapshot.SnapshotInvalid, match="decompresses to over"):
        snapshot.fetch(client, key)


def test_training_reads_the_mart_again_when_its_snapshot_is_corrupt(client, caplog):
    good = frame()
    key, _, _ = snapshot.reuse_or_publish(client, "fp-t", lambda: good, ttl=600)
    client.set(key, b"corrupted in place")
    reads = []

    def read_mart():
        reads.append(1)
        return good

    with caplog.at_level(logging.WARNING, logger=snapshot.__name__):
        again, back, reused = snapshot.reuse_or_publish(client, "fp-t", read_mart, ttl=600)
    assert (again, reused, reads) == (key, False, [1])
    assert "refused" in caplog.text
    assert_frame_equal(back, good)
    assert_frame_equal(snapshot.fetch(client, key), good)  # the key holds a good payload again


def test_the_api_reads_the_mart_when_the_runs_snapshot_is_corrupt(marts_settings, caplog):
    from serve.model.loaded import _training_mart

    client = snapshot.connect(marts_settings.redis_url)
    key = stored_under_its_own_key(client, b"\x00garbage" * 64)
    try:
        with caplog.at_level(logging.WARNING):
            mart, source = _training_mart({"snapshot_key": key}, marts_settings)
    finally:
        client.delete(key)
        client.close()
    assert source.startswith("warehouse mart")
    assert len(mart) > 0 and "publisher" in mart.columns
    assert "unreadable" in caplog.text
