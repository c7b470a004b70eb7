"""The ML mart as an Arrow IPC snapshot in Redis.

Training reads the mart from a snapshot rather than from MariaDB, so a first
run and a rerun train on byte-identical input, and MariaDB is read once per
change of the mart rather than once per consumer.

Layout (all keys share one TTL, refreshed whenever a snapshot is used):

- `vgsales:mart:ml_release_features:<sha256[:16]>`: the IPC stream. The key is
  the hash of the payload, so equal frames share a key and a publish is
  idempotent.
- `vgsales:mart:ml_release_features:latest`: the key of the newest snapshot,
  for a person looking at Redis (`redis-cli get ...:latest`); runs find their
  snapshot through the source key below or the `snapshot_key` run tag.
- `vgsales:mart:ml_release_features:source:<fingerprint>:<code>`: the key of
  the snapshot taken from a mart whose `ml.warehouse.mart.mart_fingerprint` is
  `<fingerprint>`, by frame-making code whose digest is `<code>`. This is how
  a rerun knows, without reading the mart, that the snapshot it would make
  already exists.

The functions take a Redis client and a frame; they know nothing of Prefect.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

KEY_PREFIX = "vgsales:mart:ml_release_features"
LATEST_KEY = f"{KEY_PREFIX}:latest"
# The code that turns mart rows into a frame and the frame into a payload: when
# it changes, a snapshot of unchanged rows is stale (dtypes, columns, format).
FRAME_CODE = ("ml.warehouse.mart", "ml.features", "ml.warehouse.snapshot")
DEFAULT_TTL_SECONDS = 7 * 24 * 3600
# zstd shrinks the mart about fourfold and is deterministic, so equal frames
# still give equal payloads (and keys).
_WRITE_OPTIONS = ipc.IpcWriteOptions(compression="zstd")


def connect(url: str) -> redis.Redis:
    """A binary-safe client that retries transient errors with backoff.

    Refused connections and timeouts are retried three times (about 3.5 s in
    all) before the error reaches the caller, who decides whether to degrade.
    """
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=10,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.25), retries=3),
    )


def frame_to_ipc(df: pd.DataFrame) -> bytes:
    """Serialise a frame, index and pandas dtypes included, as an IPC stream."""
    # One record batch, even for zero rows: an empty table writes no batch and
    # would lose the categories, which travel in the batch's dictionaries.
    batch = pa.RecordBatch.from_pandas(df)
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, batch.schema, options=_WRITE_OPTIONS) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def ipc_to_frame(payload: bytes) -> pd.DataFrame:
    """The frame `frame_to_ipc` was given: same dtypes, nulls, index and order.

    pyarrow restores categories, nullable and string dtypes from the pandas
    metadata it stores, but reads every text column back as pandas' `str`;
    columns that went in as `object` are turned back into `object` with None
    for missing values, as a database driver would have given them.
    """
    table = ipc.open_stream(payload).read_all()
    df = table.to_pandas()
    for column in (table.schema.pandas_metadata or {}).get("columns", []):
        name = column["name"]
        if (
            column["numpy_type"] == "object"
            and name in df.columns
            and df[name].dtype != object
        ):
            values = df[name].astype(object)
            df[name] = values.where(values.notna(), None)
    return df


def snapshot_key(digest: str) -> str:
    """The Redis key of the snapshot whose payload hashes to `digest`."""
    return f"{KEY_PREFIX}:{digest[:16]}"


def source_key(fingerprint: str) -> str:
    """The Redis key naming the snapshot this code takes of a mart with `fingerprint`."""
    return f"{KEY_PREFIX}:source:{fingerprint}:{frame_code_digest()}"


@functools.cache
def frame_code_digest() -> str:
    """SHA-256 prefix of the source of the `FRAME_CODE` modules."""
    digest = hashlib.sha256()
    for module in FRAME_CODE:
        digest.update(Path(importlib.import_module(module).__file__).read_bytes())
    return digest.hexdigest()[:12]


def publish(
    client: redis.Redis, df: pd.DataFrame, ttl: int, *, source: str | None = None
) -> str:
    """Store `df`, make it the latest snapshot and return its key.

    `source` is the fingerprint of the mart the frame was read from; passing it
    lets `fetch_for_source` find the snapshot on the next run. The payload and
    the pointers are written in one MULTI, so readers never see a pointer to a
    missing payload.
    """
    payload = frame_to_ipc(df)
    key = snapshot_key(hashlib.sha256(payload).hexdigest())
    with client.pipeline(transaction=True) as pipe:
        pipe.set(key, payload, ex=ttl)
        _point_to(pipe, key, ttl, source)
        pipe.execute()
    return key


def fetch(client: redis.Redis, key: str) -> pd.DataFrame | None:
    """The frame stored under `key`, or None when it has expired."""
    payload = client.get(key)
    return None if payload is None else ipc_to_frame(payload)


def fetch_for_source(
    client: redis.Redis, fingerprint: str
) -> tuple[str, pd.DataFrame] | None:
    """`(key, frame)` of the snapshot of a mart with `fingerprint`, if kept."""
    return _follow(client, source_key(fingerprint))


def mark_latest(
    client: redis.Redis, key: str, ttl: int, *, source: str | None = None
) -> bool:
    """Make an existing snapshot the latest and restart its TTL.

    Returns False (and changes nothing) when the snapshot has expired, so the
    caller knows to publish again.
    """
    # Once EXPIRE succeeds the payload outlives the pointers set next.
    if not client.expire(key, ttl):
        return False
    with client.pipeline(transaction=True) as pipe:
        _point_to(pipe, key, ttl, source)
        pipe.execute()
    return True


def reuse_or_publish(
    client: redis.Redis,
    fingerprint: str,
    read_mart: Callable[[], pd.DataFrame],
    ttl: int,
) -> tuple[str, pd.DataFrame, bool]:
    """`(key, frame, reused)`: the snapshot of the mart with `fingerprint`.

    Reuses the snapshot taken from an identical mart when Redis still holds it
    (restarting its TTL, making it the latest); otherwise calls `read_mart`
    and publishes. The frame returned is always the one read back from Redis,
    so a first run and a rerun hand byte-identical input to training.
    """
    found = fetch_for_source(client, fingerprint)
    if found is not None and mark_latest(client, found[0], ttl, source=fingerprint):
        return found[0], found[1], True
    key = publish(client, read_mart(), ttl, source=fingerprint)
    stored = fetch(client, key)
    if stored is None:
        raise redis.RedisError(f"{key} vanished right after it was written (maxmemory?)")
    return key, stored, False


def _point_to(pipe, key: str, ttl: int, source: str | None) -> None:
    pipe.set(LATEST_KEY, key, ex=ttl)
    if source is not None:
        pipe.set(source_key(source), key, ex=ttl)


def _follow(client: redis.Redis, pointer: str) -> tuple[str, pd.DataFrame] | None:
    target = client.get(pointer)
    if target is None:
        return None
    key = target.decode()
    df = fetch(client, key)
    return None if df is None else (key, df)

