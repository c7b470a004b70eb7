"""Drain the API's prediction log (a Redis stream) into the warehouse.

The API appends one entry per request to `vgsales:predictions` (see
`serve.prediction_log`, format in `ml.monitoring.stream`); this module moves them into
`<db>_raw.raw_prediction_log`, one row per predicted record, where dbt builds
`fct_predictions` and the drift models on top. It runs once (`drain`, the
drift flow) or continuously (`python -m ml.monitoring.consumer`).

Nothing is lost or doubled when the drain runs late, twice or crashes:

- it reads as the consumer group `warehouse`, which the API creates before
  its first entry, so Redis remembers what was delivered; entries are
  acknowledged and deleted (freeing the stream's byte budget) only after the
  rows are committed, and the group's pending entries (delivered, never
  acknowledged) are re-read first;
- rows are keyed by (stream entry id, record index), which Redis assigns, and
  written with INSERT IGNORE, so re-reading an entry adds nothing and no
  client can claim another request's key. The request id is only a label.

What the API could not log (stream at its byte cap, Redis down, queue full)
is counted in predictions, and each drain reports what was dropped since the
previous report.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import redis
import sqlalchemy as sa

from ml.monitoring.stream import GROUP, STREAM, report_drops, settle
from ml.settings import Settings
from ml.warehouse import landing

CONSUMER = "drain"
# Stream entries read per round trip (a batch request is one entry).
BATCH = 500
TABLE = "raw_prediction_log"
COLUMNS = (
    "request_id",
    "item_index",
    "stream_id",
    "logged_at",
    "endpoint",
    "model_name",
    "model_version",
    "features_json",
    "predicted_global_sales",
    "unseen_json",
    "drained_at",
)


@dataclass(frozen=True)
class DrainOutcome:
    """What one drain did."""

    entries: int  # stream entries read and acknowledged
    rows: int  # predicted records in them
    inserted: int  # rows new to the warehouse (the rest were already there)
    replayed: int  # entries re-read from the pending list (an earlier drain died)
    malformed: int  # entries that could not be parsed (acknowledged, not written)
    trimmed_unread: int  # pending entries deleted from the stream before they were landed
    dropped: int = 0  # predictions the API could not log, since the previous report
    dropped_total: int = 0  # the same since Redis started

    def describe(self) -> str:
        text = (
            f"Drained {self.entries:,} stream entries ({self.rows:,} predictions, "
            f"{self.inserted:,} new to the warehouse"
        )
        if self.replayed:
            text += f", {self.replayed:,} re-read after an interrupted drain"
        text += ")."
        if self.malformed:
            text += f" {self.malformed:,} malformed entries were skipped."
        if self.trimmed_unread:
            text += (
                f" {self.trimmed_unread:,} pending entries were deleted from the stream "
                "before being drained."
            )
        if self.dropped:
            text += (
                f" The API could not log {self.dropped:,} predictions since the last report "
                f"({self.dropped_total:,} in all): the stream was at its byte cap or Redis "
                "was unavailable; drain more often or raise PREDICTION_LOG_MAX_BYTES."
            )
        return text


def entry_rows(stream_id: str, fields: dict[bytes, bytes], drained_at: datetime) -> list[dict]:
    """The landing rows of one stream entry, one per predicted record.

    Raises ValueError when the entry does not have the shape the API writes.
    """
    try:
        text = {key.decode(): value.decode() for key, value in fields.items()}
        features = json.loads(text["features"])
        predictions = json.loads(text["predictions"])
        unseen = json.loads(text.get("unseen", "[]")) or [[] for _ in features]
        logged_at = datetime.fromtimestamp(float(text["ts"]), tz=timezone.utc)
        version = int(text["version"])
    except (KeyError, ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"entry {stream_id}: {type(error).__name__}: {error}") from None
    if not (
        isinstance(features, list) and len(features) == len(predictions) == len(unseen)
    ) or not all(isinstance(record, dict) for record in features):
        raise ValueError(
            f"entry {stream_id}: expected equally long arrays of feature records, "
            f"predictions and unseen lists, found {len(features)}, "
            f"{len(predictions)} and {len(unseen)}"
        )
    return [
        {
            "request_id": text["request_id"],
            "item_index": index,
            "stream_id": stream_id,
            "logged_at": logged_at.replace(tzinfo=None),
            "endpoint": text["endpoint"],
            "model_name": text["model"],
            "model_version": version,
            "features_json": json.dumps(record, allow_nan=False, default=_json_number),
            "predicted_global_sales": _finite(prediction),
            "unseen_json": json.dumps(fields_unseen),
            "drained_at": drained_at.replace(tzinfo=None),
        }
        for index, (record, prediction, fields_unseen) in enumerate(
            zip(features, predictions, unseen)
        )
    ]


def _json_number(value: object) -> object:
    raise TypeError(f"not JSON serialisable: {value!r}")


def _finite(value: object) -> float | None:
    number = float(value) if isinstance(value, (int, float)) else math.nan
    return number if math.isfinite(number) else None


def _insert(settings: Settings, rows: list[dict]) -> int:
    statement = sa.text(
        f"insert ignore into {landing.table(settings, TABLE)} ({', '.join(COLUMNS)}) "
        f"values ({', '.join(':' + c for c in COLUMNS)})"
    )
    with landing.transaction(settings) as connection:
        return max(connection.execute(statement, rows).rowcount, 0)


def _read(
    client: redis.Redis, cursor: str, batch: int, block_ms: int | None = None
) -> list[tuple[str, dict]]:
    reply = client.xreadgroup(GROUP, CONSUMER, {STREAM: cursor}, count=batch, block=block_ms)
    if not reply:
        return []
    return [
        (stream_id.decode() if isinstance(stream_id, bytes) else stream_id, fields or {})
        for stream_id, fields in reply[0][1]
    ]


def _ensure_group(client: redis.Redis) -> None:
    """The group, for a stream no API has written to yet (the API creates it too)."""
    try:
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def _land(
    settings: Settings, client: redis.Redis, entries: list[tuple[str, dict]],
    counts: dict[str, int], log: Callable[[str], object],
) -> None:
    """Commit the rows of `entries`, then acknowledge and delete them."""
    drained_at = datetime.now(timezone.utc)
    rows: list[dict] = []
    for stream_id, fields in entries:
        if not fields:
            counts["trimmed_unread"] += 1
            continue
        try:
            rows.extend(entry_rows(stream_id, fields, drained_at))
        except ValueError as error:
            counts["malformed"] += 1
            log(f"[drain] skipped malformed entry: {error}")
    if rows:
        counts["inserted"] += _insert(settings, rows)
    settle(client, entries)
    counts["entries"] += len(entries)
    counts["rows"] += len(rows)


def drain(
    settings: Settings,
    *,
    batch: int = BATCH,
    log: Callable[[str], object] = print,
    until: threading.Event | None = None,
    block_ms: int = 1000,
    report_seconds: float = 60.0,
) -> DrainOutcome:
    """Move every unacknowledged prediction-log entry into the warehouse.

    With `until`, keep going (blocking reads of `block_ms`, one commit per
    batch, a report every `report_seconds`) until the event is set, then
    report what the whole run did.
    """
    client = redis.Redis.from_url(settings.redis_url_as("drain"))
    counts = dict(entries=0, rows=0, inserted=0, replayed=0, malformed=0, trimmed_unread=0)
    dropped_new = dropped_total = 0
    try:
        _ensure_group(client)
        # Our pending entries first (cursor "0", then after the last one
        # read), then never-delivered ones (">").
        cursor = "0"
        while True:
            entries = _read(client, cursor, batch)
            if not entries:
                break
            _land(settings, client, entries, counts, log)
            counts["replayed"] += len(entries)
            cursor = entries[-1][0]
        reported_at = time.monotonic()
        while True:
            following = until is not None and not until.is_set()
            entries = _read(client, ">", batch, block_ms if following else None)
            if entries:
                _land(settings, client, entries, counts, log)
            elif not following:
                break
            if following and time.monotonic() - reported_at >= report_seconds:
                total, new = report_drops(client)
                dropped_total, dropped_new = total, dropped_new + new
                log(f"[drain] {DrainOutcome(**counts, dropped=new, dropped_total=total).describe()}")
                reported_at = time.monotonic()
        total, new = report_drops(client)
        dropped_total, dropped_new = total, dropped_new + new
    finally:
        client.close()
    outcome = DrainOutcome(**counts, dropped=dropped_new, dropped_total=dropped_total)
    log(f"[drain] {outcome.describe()}")
    return outcome
