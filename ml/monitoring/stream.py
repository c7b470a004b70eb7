"""The prediction stream's format: its Redis keys, its byte cap and one entry's fields.

The API writes entries (`serve.prediction_log`) and the drain reads them
(`ml.monitoring.drain`); both take the format from here, so the writer and the
reader cannot drift apart and the drain needs nothing from `serve`.

One stream entry per request (a batch is one entry), all values strings:
`ts` (Unix seconds), `request_id`, `endpoint`, `model`, `version`,
`features` (JSON array of records keyed by feature name), `predictions`
(JSON array of global sales) and `unseen` (JSON array, per record, of the
fields whose category was unseen in training).

Nothing is trimmed silently. The log is bounded in bytes: `BYTES_KEY` holds the
payload bytes of the entries in the stream (the writer adds, the drain
subtracts when it deletes what it landed), and an entry that would pass the
cap is not written but counted in `DROPPED_KEY`, in predictions. Both
scripts below run atomically in Redis, so workers and drains never race on
the counters, and the consumer group exists before the first entry does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson
import redis

STREAM = "vgsales:predictions"
# Payload bytes in the stream now, and predictions never written (running total).
BYTES_KEY = "vgsales:predictions:bytes"
DROPPED_KEY = "vgsales:predictions:dropped"
# The drain's consumer group: created by the writer before its first entry.
GROUP = "warehouse"
FIELDS = ("ts", "endpoint", "request_id", "model", "version", "features", "predictions", "unseen")

# KEYS: stream, bytes, dropped. ARGV: cap, predictions dropped before Redis
# could be told (queue full, Redis down), then per entry: payload bytes,
# predictions, and the values of FIELDS in order.
# Returns {predictions written, predictions refused by the cap}.
_APPEND = """
redis.pcall('XGROUP', 'CREATE', KEYS[1], '%(group)s', '0', 'MKSTREAM')
local cap = tonumber(ARGV[1])
local carried = tonumber(ARGV[2])
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
local written, refused = 0, 0
local names = {%(names)s}
local i = 3
while i <= #ARGV do
    local size, rows = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
    if used + size <= cap then
        local fields = {}
        for j, name in ipairs(names) do
            fields[2 * j - 1] = name
            fields[2 * j] = ARGV[i + 1 + j]
        end
        redis.call('XADD', KEYS[1], '*', unpack(fields))
        used = used + size
        written = written + rows
    else
        refused = refused + rows
    end
    i = i + 2 + #names
end
redis.call('SET', KEYS[2], used)
if carried + refused > 0 then redis.call('INCRBY', KEYS[3], carried + refused) end
return {written, refused}
""" % {"group": GROUP, "names": ", ".join(f"'{name}'" for name in FIELDS)}

# KEYS: stream, bytes. ARGV: group, payload bytes of the entries, their ids.
# Acknowledges and deletes landed entries and frees their bytes.
_SETTLE = """
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
redis.call('XDEL', KEYS[1], unpack(ids))
if redis.call('DECRBY', KEYS[2], ARGV[2]) < 0 then redis.call('SET', KEYS[2], 0) end
"""


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


def entry_bytes(fields: Mapping[str | bytes, str | bytes]) -> int:
    """Payload bytes of an entry: what the cap counts, writer and drain alike."""
    return sum(len(_as_bytes(k)) + len(_as_bytes(v)) for k, v in fields.items())


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def append(
    client: redis.Redis,
    entries: Sequence[tuple[dict[str, bytes], int]],
    *,
    max_bytes: int,
    carried_drops: int = 0,
) -> tuple[int, int]:
    """Append `(fields, predictions)` entries within the byte cap, atomically.

    Returns (predictions written, predictions refused by the cap); refused and
    `carried_drops` predictions are added to `DROPPED_KEY`.
    """
    args: list[int | bytes] = [max_bytes, carried_drops]
    for fields, rows in entries:
        args += [entry_bytes(fields), rows, *(fields[name] for name in FIELDS)]
    written, refused = client.eval(_APPEND, 3, STREAM, BYTES_KEY, DROPPED_KEY, *args)
    return int(written), int(refused)


def settle(client: redis.Redis, entries: Sequence[tuple[str, Mapping]]) -> None:
    """Acknowledge and delete `(stream id, fields)` entries once they are landed."""
    if not entries:
        return
    size = sum(entry_bytes(fields) for _, fields in entries)
    client.eval(_SETTLE, 2, STREAM, BYTES_KEY, GROUP, size, *(i for i, _ in entries))


# KEYS: dropped, reported. The running total and what it grew by since the
# last report, in one step so that two drains never report the same drops.
_REPORT_DROPS = """
local total = tonumber(redis.call('GET', KEYS[1]) or '0')
local before = tonumber(redis.call('GETSET', KEYS[2], total) or '0')
if before > total then before = 0 end
return {total, total - before}
"""
REPORTED_KEY = "vgsales:predictions:dropped_reported"


def report_drops(client: redis.Redis) -> tuple[int, int]:
    """(predictions dropped in total, of which not reported before) since Redis started."""
    total, new = client.eval(_REPORT_DROPS, 2, DROPPED_KEY, REPORTED_KEY)
    return int(total), int(new)
