"""The mart snapshot in a real Redis: keys, TTL, pointers (the round trips
through bytes alone: tests/unit/test_snapshot_ipc.py)."""

from __future__ import annotations

import hashlib

import pytest
import redis
from pandas.testing import assert_frame_equal

from ml.warehouse import snapshot
from tests.helpers import free_port, isolated_settings
from tests.unit.test_snapshot_ipc import frame_with_nulls

REDIS_DB = 3


@pytest.fixture(scope="module")
def client(stack_settings, tmp_path_factory):
    settings = isolated_settings(
        stack_settings, "snapshot", REDIS_DB, tmp_path_factory.mktemp("snapshot")
    )
    client = snapshot.connect(settings.redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def latest(client) -> str | None:
    """The key the `latest` pointer names."""
    target = client.get(snapshot.LATEST_KEY)
    return None if target is None else target.decode()


def test_snapshot_keys_change_with_values_dtypes_and_order(client):
    df = frame_with_nulls()
    key = snapshot.publish(client, df, ttl=600)
    assert key == snapshot.publish(client, df.copy(), ttl=600)
    changed = df.copy()
    changed.loc[changed.index[0], "sales"] = 30.27
    as_float = df.assign(year=df["year"].astype("Float64"))
    reordered = df.iloc[::-1]
    others = {snapshot.publish(client, f, ttl=600) for f in (changed, as_float, reordered)}
    assert key not in others and len(others) == 3


def test_publish_and_fetch_through_redis(client):
    df = frame_with_nulls()
    key = snapshot.publish(client, df, ttl=600, source="fp-one")
    assert key == snapshot.snapshot_key(hashlib.sha256(snapshot.frame_to_ipc(df)).hexdigest())
    assert key.startswith("vgsales:mart:ml_release_features:") and len(key.rsplit(":", 1)[1]) == 16
    assert 0 < client.ttl(key) <= 600
    assert 0 < client.ttl(snapshot.LATEST_KEY) <= 600

    assert latest(client) == key
    assert_frame_equal(snapshot.fetch(client, key), df, check_exact=True)
    source_key, from_source = snapshot.fetch_for_source(client, "fp-one")
    assert source_key == key
    assert_frame_equal(from_source, df, check_exact=True)
    assert snapshot.fetch_for_source(client, "fp-unknown") is None

    # Publishing the same frame again is idempotent: same key, no new payload.
    payloads_before = len(client.keys(f"{snapshot.KEY_PREFIX}:*"))
    assert snapshot.publish(client, df.copy(), ttl=600, source="fp-one") == key
    assert len(client.keys(f"{snapshot.KEY_PREFIX}:*")) == payloads_before


def test_latest_follows_the_newest_and_mark_latest_restores_an_older_one(client):
    first, second = frame_with_nulls(), frame_with_nulls().iloc[:2]
    first_key = snapshot.publish(client, first, ttl=600, source="fp-first")
    second_key = snapshot.publish(client, second, ttl=600, source="fp-second")
    assert first_key != second_key
    assert latest(client) == second_key

    client.expire(first_key, 5)
    assert snapshot.mark_latest(client, first_key, ttl=900, source="fp-first")
    assert latest(client) == first_key
    assert client.ttl(first_key) > 600

    client.delete(second_key)
    assert snapshot.fetch_for_source(client, "fp-second") is None
    assert not snapshot.mark_latest(client, second_key, ttl=900)
    assert latest(client) == first_key


def test_nothing_is_found_on_an_empty_database(client):
    client.flushdb()
    assert latest(client) is None
    assert snapshot.fetch_for_source(client, "fp-one") is None


def test_connect_to_a_closed_port_raises_after_its_retries(stack_settings):
    client = snapshot.connect(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(redis.ConnectionError):
        snapshot.fetch(client, snapshot.LATEST_KEY)


def test_reuse_or_publish_reads_the_mart_once_per_fingerprint(client):
    client.flushdb()
    df = frame_with_nulls()
    reads = []

    def read_mart():
        reads.append(1)
        return df

    key, first, reused = snapshot.reuse_or_publish(client, "fp-a", read_mart, ttl=600)
    assert (reused, len(reads)) == (False, 1)
    assert_frame_equal(first, df, check_exact=True)

    again_key, again, reused = snapshot.reuse_or_publish(client, "fp-a", read_mart, ttl=600)
    assert (again_key, reused, len(reads)) == (key, True, 1)
    assert_frame_equal(again, df, check_exact=True)

    # Another fingerprint must read the mart, even if it yields the same rows.
    other_key, _, reused = snapshot.reuse_or_publish(client, "fp-b", read_mart, ttl=600)
    assert (other_key, reused, len(reads)) == (key, False, 2)

    # An expired payload is published again rather than pointed to.
    client.delete(key)
    _, _, reused = snapshot.reuse_or_publish(client, "fp-a", read_mart, ttl=600)
    assert (reused, len(reads)) == (False, 3)
    assert client.exists(key)
