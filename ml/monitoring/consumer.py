"""`python -m ml.monitoring.consumer`: land the prediction log continuously.

An hourly drain covered seconds of the API's traffic; this process reads
the stream as it fills (blocking reads, one commit per batch), so the stream
stays far below its byte cap while the consumer keeps up. `make serve` and
docker-compose start it beside the API. When the warehouse or Redis is away
(or the landing table does not exist yet: dbt creates it), it waits and
tries again; entries stay pending in the stream meanwhile, nothing is lost.
SIGTERM or SIGINT stops it after the batch in hand.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

import redis
import sqlalchemy as sa

from ml.monitoring.drain import drain
from ml.settings import load_settings
from ml.warehouse.landing import LandingTableMissing

RETRY_SECONDS = (1, 2, 5, 10, 30)


def run(stop: threading.Event, *, report_seconds: float, log=print) -> None:
    """Drain until `stop` is set, restarting after warehouse or Redis errors."""
    settings = load_settings()
    failures = 0
    while not stop.is_set():
        try:
            drain(settings, until=stop, report_seconds=report_seconds, log=log)
            failures = 0
        except (redis.RedisError, sa.exc.SQLAlchemyError, LandingTableMissing) as error:
            wait = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
            log(f"[consumer] {type(error).__name__}: {error}; retrying in {wait} s")
            failures += 1
            stop.wait(wait)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-seconds", type=float, default=60.0,
                        help="seconds between progress reports (default %(default)s)")
    args = parser.parse_args()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run(stop, report_seconds=args.report_seconds,
        log=lambda line: print(line, file=sys.stderr, flush=True))


if __name__ == "__main__":
    main()
