"""Drain the API's prediction log (a Redis stream) into the warehouse.

The API appends one entry per request to `vgsales:predictions` (see
`serve.prediction_log`, format in `ml.monitoring.stream`); this module moves them into
`<db>_raw.raw_prediction_log`, one row per predicted record, where dbt builds
`fct_predictions` and the drift models on top, and what the log lost into
`<db>_raw.raw_prediction_log_losses`. It runs once (`drain`, the drift flow)
or continuously (`python -m ml.monitoring.consumer`).

Nothing is lost or doubled when the drain runs late, twice or crashes:

- it reads as the consumer group `warehouse`, so Redis remembers what was
  delivered; entries are acknowledged and deleted (freeing the stream's
  bytes) only after their rows are committed, and the group's pending
  entries (delivered, never acknowledged) are re-read first;
- rows are keyed by (stream entry id, record index), which Redis assigns, and
  written with INSERT IGNORE, so re-reading an entry adds nothing and no
  client can claim another request's key. The request id is only a label.

Nothing is lost uncounted either: the API's drop records (predictions it
answered but could not log), entries that cannot be parsed, delivered
entries deleted before they were landed, and entries trimmed from the stream
before the group read them (`ml.monitoring.stream.settle`) are landed as
losses, and each drain reports them.
"""

from __future__ import annotations

import math
import operator
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson
import redis
import sqlalchemy as sa

from ml.monitoring.stream import GROUP, STREAM, drop_record, settle
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
LOSSES = "raw_prediction_log_losses"
LOSS_COLUMNS = ("loss_id", "noticed_at", "reason", "predictions", "entries", "drained_at")


@dataclass(frozen=True)
class DrainOutcome:
    """What one drain did."""

    entries: int  # stream entries read and acknowledged
    rows: int  # predicted records in them
    inserted: int  # rows new to the warehouse (the rest were already there)
    replayed: int  # entries re-read from the pending list (an earlier drain died)
    malformed: int  # entries that could not be parsed (acknowledged, counted as lost)
    trimmed_unread: int  # pending entries deleted from the stream before they were landed
    dropped: int = 0  # predictions the API answered but could not log (its drop records)
    vanished: int = 0  # entries trimmed from the stream before the drain read them

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
        if self.vanished:
            text += (
                f" {self.vanished:,} entries left the stream before the drain read them "
                "(trimmed by an XADD with MAXLEN or MINID, or by the admin)."
            )
        if self.dropped:
            text += (
                f" The API could not log {self.dropped:,} predictions (the stream at its "
                "byte cap, Redis failing, a full queue or a killed worker); for the cap, "
                "drain more often or raise PREDICTION_LOG_MAX_BYTES."
            )
        if self.malformed or self.trimmed_unread or self.vanished or self.dropped:
            text += f" Each loss is in {LOSSES}."
        return text


def entry_rows(stream_id: str, fields: dict[bytes, bytes], drained_at: datetime) -> list[dict]:
    """The landing rows of one stream entry, one per predicted record.

    Raises ValueError when the entry does not have the shape the API writes.
    """
    try:
        text = {key.decode(): value.decode() for key, value in fields.items()}
        features = orjson.loads(text["features"])
        predictions = orjson.loads(text["predictions"])
        unseen = orjson.loads(text.get("unseen", "[]")) or [[] for _ in features]
        logged_at = datetime.fromtimestamp(float(text["ts"]), tz=timezone.utc)
        version = int(text["version"])
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as error:
        raise ValueError(f"entry {stream_id}: {type(error).__name__}: {error}") from None
    if not (
        isinstance(features, list) and len(features) == len(predictions) == len(unseen)
    ) or not all(isinstance(record, dict) for record in features):
        raise ValueError(
            f"entry {stream_id}: expected equally long arrays of feature records, "
            f"predictions and unseen lists, found {len(features)}, "
            f"{len(predictions)} and {len(unseen)}"
        )
    common = {
        "request_id": text["request_id"],
        "stream_id": stream_id,
        "logged_at": logged_at.replace(tzinfo=None),
        "endpoint": text["endpoint"],
        "model_name": text["model"],
        "model_version": version,
        "drained_at": drained_at.replace(tzinfo=None),
    }
    # JSON parsed from the stream serialises back as it came (orjson refuses
    # NaN and infinities when parsing), one record per row.
    return [
        {
            **common,
            "item_index": index,
            "features_json": orjson.dumps(record).decode(),
            "predicted_global_sales": _finite(prediction),
            "unseen_json": orjson.dumps(fields_unseen).decode(),
        }
        for index, (record, prediction, fields_unseen) in enumerate(
            zip(features, predictions, unseen)
        )
    ]


def _finite(value: object) -> float | None:
    number = float(value) if isinstance(value, (int, float)) else math.nan
    return number if math.isfinite(number) else None


def _insert(connection: sa.Connection, table: str, columns: tuple[str, ...],
            rows: list[dict]) -> int:
    """INSERT IGNORE `rows`, bound, as few multi-row statements as pymysql
    makes of an executemany; straight to the driver, since SQLAlchemy's own
    processing of each row's parameters cost more than the insert."""
    statement = (f"insert ignore into {table} ({', '.join(columns)}) "
                 f"values ({', '.join(['%s'] * len(columns))})")
    values = operator.itemgetter(*columns)
    return max(connection.exec_driver_sql(statement, [values(row) for row in rows]).rowcount, 0)


def _loss(loss_id: str, reason: str, noticed_at: datetime, drained_at: datetime, *,
          predictions: int | None = None, entries: int | None = None) -> dict:
    return {"loss_id": loss_id, "noticed_at": noticed_at.replace(tzinfo=None),
            "reason": reason, "predictions": predictions, "entries": entries,
            "drained_at": drained_at.replace(tzinfo=None)}


def _stream_time(stream_id: str) -> datetime:
    """When Redis added the entry (the milliseconds of its id)."""
    return datetime.fromtimestamp(int(stream_id.split("-", 1)[0]) / 1000, tz=timezone.utc)


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
    """The group, reading from the stream's first entry. Its read counter
    starts at 0, so entries trimmed before it existed count as vanished too."""
    try:
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True, entries_read=0)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


class _Lander:
    """Lands entries, settles them in Redis and counts what it did."""

    def __init__(self, settings: Settings, client: redis.Redis, using: sa.Engine | None,
                 log: Callable[[str], object]) -> None:
        self.settings, self.client, self.using, self.log = settings, client, using, log
        self.counts = dict(entries=0, rows=0, inserted=0, replayed=0, malformed=0,
                           trimmed_unread=0, dropped=0, vanished=0)

    def outcome(self) -> DrainOutcome:
        return DrainOutcome(**self.counts)

    def land(self, entries: list[tuple[str, dict]]) -> None:
        """Commit the rows and losses of `entries`, then acknowledge and delete them."""
        drained_at = datetime.now(timezone.utc)
        rows: list[dict] = []
        losses: list[dict] = []
        for stream_id, fields in entries:
            if not fields:
                self.counts["trimmed_unread"] += 1
                losses.append(_loss(stream_id, "deleted_unlanded", drained_at, drained_at,
                                    entries=1))
                continue
            try:
                dropped = drop_record(fields)
                if dropped is None:
                    rows.extend(entry_rows(stream_id, fields, drained_at))
                    continue
            except ValueError as error:
                self.counts["malformed"] += 1
                losses.append(_loss(stream_id, "malformed", drained_at, drained_at, entries=1))
                self.log(f"[drain] skipped malformed entry: {error}")
                continue
            reason, predictions = dropped
            self.counts["dropped"] += predictions
            losses.append(_loss(stream_id, reason, _stream_time(stream_id), drained_at,
                                predictions=predictions))
        if rows or losses:
            with landing.transaction(self.settings, self.using) as connection:
                if rows:
                    self.counts["inserted"] += _insert(
                        connection, landing.table(self.settings, TABLE), COLUMNS, rows)
                if losses:
                    _insert(connection, landing.table(self.settings, LOSSES), LOSS_COLUMNS,
                            losses)
        self.settle([stream_id for stream_id, _ in entries])
        self.counts["entries"] += len(entries)
        self.counts["rows"] += len(rows)

    def settle(self, ids: list[str]) -> None:
        """Acknowledge and delete `ids`; land a loss for entries that vanished unread.

        A drain killed between the two loses that count: Redis has already
        marked those entries counted.
        """
        vanished = settle(self.client, ids)
        if not vanished:
            return
        self.counts["vanished"] += vanished
        now = datetime.now(timezone.utc)
        with landing.transaction(self.settings, self.using) as connection:
            _insert(connection, landing.table(self.settings, LOSSES), LOSS_COLUMNS,
                    [_loss(f"vanished-{uuid.uuid4().hex}", "vanished", now, now,
                           entries=vanished)])


def drain(
    settings: Settings,
    *,
    batch: int = BATCH,
    log: Callable[[str], object] = print,
    until: threading.Event | None = None,
    block_ms: int = 1000,
    linger_seconds: float = 0.0,
    report_seconds: float = 60.0,
    using: sa.Engine | None = None,
) -> DrainOutcome:
    """Move every unacknowledged prediction-log entry into the warehouse.

    With `until`, keep going (blocking reads of `block_ms`, one commit per
    batch, a report every `report_seconds`) until the event is set, then
    report what the whole run did; after a batch smaller than `batch`, wait
    `linger_seconds` before the next read, so that a trickle of requests
    lands in few large batches rather than one batch per request. `using`
    is a `held` engine (ml.warehouse.engine) for a long-lived caller.
    """
    client = redis.Redis.from_url(settings.redis_url_as("drain"))
    lander = _Lander(settings, client, using, log)
    try:
        _ensure_group(client)
        # Our pending entries first (cursor "0", then after the last one
        # read), then never-delivered ones (">").
        cursor = "0"
        while entries := _read(client, cursor, batch):
            lander.land(entries)
            lander.counts["replayed"] += len(entries)
            cursor = entries[-1][0]
        reported_at = time.monotonic()
        while True:
            following = until is not None and not until.is_set()
            entries = _read(client, ">", batch, block_ms if following else None)
            if entries:
                lander.land(entries)
            else:
                # Nothing to land: still look for entries that vanished unread.
                lander.settle([])
                if not following:
                    break
            if following and time.monotonic() - reported_at >= report_seconds:
                log(f"[drain] {lander.outcome().describe()}")
                reported_at = time.monotonic()
            if following and 0 < len(entries) < batch and linger_seconds:
                until.wait(linger_seconds)
    finally:
        client.close()
    outcome = lander.outcome()
    log(f"[drain] {outcome.describe()}")
    return outcome
