"""Drain the API's prediction log (a Redis stream) into the warehouse.

The API appends one entry per request to `vgsales:predictions` (see
`serve.prediction_log`, format in `ml.monitoring.stream`); this module moves them into
`<db>_raw.raw_prediction_log`, one row per predicted record, where dbt builds
`fct_predictions` and the drift models on top.

Nothing is lost or doubled when the drain runs late, twice or crashes:

- it reads as the consumer group `warehouse`, so Redis remembers what was
  delivered; entries are acknowledged (XACK) only after the rows are
  committed, and the group's pending entries (delivered, never
  acknowledged) are re-read first;
- rows are keyed by (request id, record index) and written with INSERT
  IGNORE, so re-reading an entry, or a client retrying with the same
  X-Request-ID, adds nothing.

The stream is capped (about 10,000 entries): entries trimmed before a drain
read them are gone. The drain counts them from the group's lag and says so;
drain more often than the API fills the cap.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import redis
import sqlalchemy as sa

from ml.monitoring.stream import STREAM
from ml.settings import Settings
from ml.warehouse import landing

GROUP = "warehouse"
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
    trimmed_unread: int  # entries the stream's cap removed before any drain read them

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
                f" {self.trimmed_unread:,} entries were trimmed from the stream before "
                "being drained: drain more often."
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


def _ensure_group(client: redis.Redis) -> None:
    """Create the consumer group at the stream's start (and the stream) once."""
    try:
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def _group_lag(client: redis.Redis) -> tuple[int | None, str]:
    """Entries added after the group's last delivery, and the newest id now."""
    group = next(
        g for g in client.xinfo_groups(STREAM) if g["name"] in (GROUP, GROUP.encode())
    )
    last = client.xinfo_stream(STREAM)["last-generated-id"]
    return group.get("lag"), last.decode() if isinstance(last, bytes) else last


def _id_key(stream_id: str) -> tuple[int, int]:
    millis, _, sequence = stream_id.partition("-")
    return int(millis), int(sequence or 0)


def _insert(settings: Settings, rows: list[dict]) -> int:
    statement = sa.text(
        f"insert ignore into {landing.table(settings, TABLE)} ({', '.join(COLUMNS)}) "
        f"values ({', '.join(':' + c for c in COLUMNS)})"
    )
    with landing.transaction(settings) as connection:
        return max(connection.execute(statement, rows).rowcount, 0)


def _read(client: redis.Redis, cursor: str, batch: int) -> list[tuple[str, dict]]:
    reply = client.xreadgroup(GROUP, CONSUMER, {STREAM: cursor}, count=batch)
    if not reply:
        return []
    return [
        (stream_id.decode() if isinstance(stream_id, bytes) else stream_id, fields or {})
        for stream_id, fields in reply[0][1]
    ]


def drain(
    settings: Settings, *, batch: int = BATCH, log: Callable[[str], object] = print
) -> DrainOutcome:
    """Move every unacknowledged prediction-log entry into the warehouse."""
    client = redis.Redis.from_url(settings.redis_url_as("drain"))
    counts = dict(entries=0, rows=0, inserted=0, replayed=0, malformed=0, trimmed_unread=0)
    try:
        _ensure_group(client)
        lag, newest_at_start = _group_lag(client)
        newest_key = _id_key(newest_at_start)
        unread_seen = 0
        # Our pending entries first (cursor "0", then after the last one
        # read), then never-delivered ones (">").
        for phase in ("pending", "new"):
            cursor = "0" if phase == "pending" else ">"
            while True:
                entries = _read(client, cursor, batch)
                if not entries:
                    break
                drained_at = datetime.now(timezone.utc)
                rows: list[dict] = []
                for stream_id, fields in entries:
                    if not fields:
                        # A pending entry the cap trimmed before it was written.
                        counts["trimmed_unread"] += 1
                        continue
                    try:
                        rows.extend(entry_rows(stream_id, fields, drained_at))
                    except ValueError as error:
                        counts["malformed"] += 1
                        log(f"[drain] skipped malformed entry: {error}")
                if rows:
                    counts["inserted"] += _insert(settings, rows)
                ids = [stream_id for stream_id, _ in entries]
                client.xack(STREAM, GROUP, *ids)
                counts["entries"] += len(entries)
                counts["rows"] += len(rows)
                if phase == "pending":
                    counts["replayed"] += len(entries)
                    cursor = ids[-1]
                else:
                    unread_seen += sum(1 for i in ids if _id_key(i) <= newest_key)
        if lag is not None:
            counts["trimmed_unread"] += max(lag - unread_seen, 0)
    finally:
        client.close()
    outcome = DrainOutcome(**counts)
    log(f"[drain] {outcome.describe()}")
    return outcome

