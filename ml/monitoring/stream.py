"""The prediction stream's format: its Redis key, its entries and the functions that write them.

The API writes entries (`serve.prediction_log`) and the drain reads them
(`ml.monitoring.drain`); both take the format from here, so the writer and the
reader cannot drift apart and the drain needs nothing from `serve`.

One stream entry per request (a batch is one entry), all values strings:
`ts` (Unix seconds), `request_id`, `endpoint`, `model`, `version`,
`features` (JSON array of records keyed by feature name), `predictions`
(JSON array of global sales) and `unseen` (JSON array, per record, of the
fields whose category was unseen in training).

Nothing is trimmed silently. The log is bounded in bytes: an entry that
would take the stream's memory (as Redis accounts it) past the cap is not
written, and what the API could not write is recorded as a drop record, an
entry of its own with `reason` and `dropped` (predictions). Both steps run
as Redis functions (stream.lua, loaded by the admin), atomically; they run
with the caller's rights and need none that could replace or forge
anything (docs/faults_and_security.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import orjson
import redis

STREAM = "vgsales:predictions"
# The drain's consumer group (ml.monitoring.drain creates it).
GROUP = "warehouse"
FIELDS = ("ts", "endpoint", "request_id", "model", "version", "features", "predictions", "unseen")
# The functions' source, loaded into Redis by the admin; the roles only call them.
LIBRARY = Path(__file__).with_name("stream.lua")
LIBRARY_NAME = "vgsales_predictions"
APPEND = "vgsales_predictions_append"
SETTLE = "vgsales_predictions_settle"
# Why predictions were dropped (a drop record's `reason`).
BYTE_CAP = "byte_cap"
UNAVAILABLE = "unavailable"


class FunctionsMissing(redis.RedisError):
    """Redis has not got the stream's functions: its admin has not loaded them."""


def load_functions(admin: redis.Redis) -> None:
    """Load (or replace) the stream's functions; needs the admin user.

    Redis keeps functions in memory only: `scripts/stack.sh up` calls this
    (through redis-cli) on every start, as compose's redis service does.
    """
    admin.function_load(LIBRARY.read_text(), replace=True)


def functions_loaded(client: redis.Redis) -> bool:
    """Whether Redis has this checkout's version of the functions (admin only)."""
    for library in client.function_list(library=LIBRARY_NAME, withcode=True):
        info = dict(zip(library[::2], library[1::2]))
        code = info.get(b"library_code", info.get("library_code"))
        if code is not None:
            return (code.decode() if isinstance(code, bytes) else code) == LIBRARY.read_text()
    return False


def encode_entry(
    ts: float,
    endpoint: str,
    request_id: str,
    model: str,
    version: str,
    features: Sequence[dict],
    predictions: Sequence[float],
    unseen: Sequence[list[str]],
) -> dict[str, bytes]:
    """The field map of one request, as bytes, in `FIELDS` order."""
    return {
        "ts": f"{ts:.6f}".encode(),
        "endpoint": endpoint.encode(),
        "request_id": request_id.encode(),
        "model": model.encode(),
        "version": str(version).encode(),
        "features": orjson.dumps(features),
        "predictions": orjson.dumps(predictions),
        "unseen": orjson.dumps(unseen),
    }


def drop_record(fields: Mapping[bytes, bytes]) -> tuple[str, int] | None:
    """`(reason, predictions)` of a drop record, None for a prediction entry.

    Raises ValueError for a drop record whose count is not a whole number.
    """
    if b"dropped" not in fields:
        return None
    dropped = fields[b"dropped"].decode(errors="replace")
    if not dropped.isdigit():
        raise ValueError(f"a drop record's count must be a whole number, found {dropped!r}")
    return fields.get(b"reason", b"").decode(errors="replace")[:32], int(dropped)


def append(
    client: redis.Redis,
    entries: Sequence[tuple[Mapping[str, bytes], int]],
    *,
    max_bytes: int,
    drops: Mapping[str, int] | None = None,
) -> tuple[int, int]:
    """Append `(fields, predictions)` entries within the byte cap, atomically,
    after one drop record per `drops` item (reason: predictions).

    Returns (predictions written, predictions refused by the cap); the caller
    records the refused ones. Raises `FunctionsMissing` when Redis lacks the
    function.
    """
    records = [(reason, n) for reason, n in (drops or {}).items() if n]
    args: list[int | str | bytes] = [max_bytes, len(records)]
    for reason, n in records:
        args += [reason, n]
    args += [len(FIELDS), *FIELDS]
    for fields, rows in entries:
        args += [rows, *(fields[name] for name in FIELDS)]
    written, refused = _call(client, APPEND, *args)
    return int(written), int(refused)


def settle(client: redis.Redis, ids: Sequence[str]) -> int:
    """Acknowledge and delete the entries `ids` once their rows are committed.

    Returns the number of entries that left the stream unread since the last
    call (each counted once; see stream.lua).
    """
    return int(_call(client, SETTLE, GROUP, *ids))


def _call(client: redis.Redis, function: str, *args):
    try:
        return client.fcall(function, 1, STREAM, *args)
    except redis.ResponseError as error:
        if "function not found" in str(error).lower():
            raise FunctionsMissing(
                f"Redis has no function {function}: its admin loads the library "
                f"{LIBRARY_NAME} ({LIBRARY.name}) with `scripts/stack.sh up` (compose: the "
                "redis service), on every start, since Redis keeps functions in memory only"
            ) from None
        raise
