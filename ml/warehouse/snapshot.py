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

Reads trust nothing they find: whoever can write to Redis could leave
garbage, another payload under a key, or a small payload that decompresses
to gigabytes. `fetch` checks the size before fetching, the payload's hash
against its key, and decompresses at most `MAX_FRAME_BYTES`; a snapshot that
fails raises `SnapshotInvalid`, a `redis.RedisError`, so every reader's
fallback for an unavailable Redis (the mart in MariaDB) covers it too.

The payload is an uncompressed IPC stream compressed whole with zstd (not
Arrow's per-buffer compression, whose expansion is only known once a batch
is decoded), so the decompressed size is bounded while reading.

The functions take a Redis client and a frame; they know nothing of Prefect.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import logging
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
CODEC = "zstd"
# Bounds far above the real mart's (docs/faults_and_security.md) that keep a
# hostile payload from exhausting a worker's memory.
MAX_PAYLOAD_BYTES = 32 * 1024 * 1024
MAX_FRAME_BYTES = 256 * 1024 * 1024

log = logging.getLogger(__name__)


class SnapshotInvalid(redis.RedisError):
    """What Redis holds under a snapshot key is not a snapshot this code wrote."""


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
    with pa.CompressedOutputStream(sink, CODEC) as compressed:
        with ipc.new_stream(compressed, batch.schema) as writer:
            writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def ipc_to_frame(payload: bytes) -> pd.DataFrame:
    """The frame `frame_to_ipc` was given: same dtypes, nulls, index and order.

    pyarrow restores categories, nullable and string dtypes from the pandas
    metadata it stores, but reads every text column back as pandas' `str`;
    columns that went in as `object` are turned back into `object` with None
    for missing values, as a database driver would have given them.
    `SnapshotInvalid` when the payload is not such a stream or decompresses
    to more than `MAX_FRAME_BYTES`.
    """
    try:
        with pa.CompressedInputStream(pa.BufferReader(payload), CODEC) as stream:
            raw = stream.read(MAX_FRAME_BYTES + 1)
        if len(raw) > MAX_FRAME_BYTES:
            raise SnapshotInvalid(f"decompresses to over {MAX_FRAME_BYTES} bytes")
        table = ipc.open_stream(raw).read_all()
        table.validate(full=True)
        df = table.to_pandas()
    except (pa.ArrowException, OSError, ValueError, KeyError, TypeError) as error:
        raise SnapshotInvalid(f"not an Arrow IPC snapshot ({type(error).__name__})") from None
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
    """The frame stored under `key`, or None when it has expired.

    `SnapshotInvalid` when the payload is too large (asked before fetching
    it), does not hash to its key, or does not decode within the bounds.
    """
    size = client.strlen(key)
    if size > MAX_PAYLOAD_BYTES:
        raise SnapshotInvalid(f"{key} holds {size} bytes, over {MAX_PAYLOAD_BYTES}")
    payload = client.get(key)
    if payload is None:
        return None
    if snapshot_key(hashlib.sha256(payload).hexdigest()) != key:
        raise SnapshotInvalid(f"the payload under {key} does not hash to its key")
    return ipc_to_frame(payload)


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
    try:
        found = fetch_for_source(client, fingerprint)
    except SnapshotInvalid as error:
        log.warning("snapshot of mart %s refused (%s); reading the mart again", fingerprint, error)
        found = None
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

