"""The prediction stream's format: its Redis key, its cap and one entry's fields.

The API writes entries (`serve.prediction_log`) and the drain reads them
(`ml.monitoring.drain`); both take the format from here, so the writer and the
reader cannot drift apart and the drain needs nothing from `serve`.

One stream entry per request (a batch is one entry), all values strings:
`ts` (Unix seconds), `request_id`, `endpoint`, `model`, `version`,
`features` (JSON array of records keyed by feature name), `predictions`
(JSON array of global sales) and `unseen` (JSON array, per record, of the
fields whose category was unseen in training).
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

STREAM = "vgsales:predictions"
MAXLEN = 10_000


def encode_entry(
    ts: float,
    endpoint: str,
    request_id: str,
    model: str,
    version: str,
    features: Sequence[dict],
    predictions: Sequence[float],
    unseen: Sequence[list[str]],
) -> dict[str, str | bytes]:
    """The field map XADDed for one request."""
    return {
        "ts": f"{ts:.6f}",
        "endpoint": endpoint,
        "request_id": request_id,
        "model": model,
        "version": version,
        "features": orjson.dumps(features),
        "predictions": orjson.dumps(predictions),
        "unseen": orjson.dumps(unseen),
    }
