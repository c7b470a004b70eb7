"""`python -m ml.monitoring.consumer`: land the prediction log continuously.

An hourly drain covered seconds of the API's traffic; this process reads
the stream as it fills (blocking reads, one commit per batch), so the stream
stays far below its byte cap while the consumer keeps up. `make serve` and
docker-compose start it beside the API. It holds one warehouse connection
(`ml.warehouse.engine.held`) and, after a short batch, lingers a moment
before reading again, so a trickle of requests costs it a few round trips
per batch rather than per request. When the warehouse or Redis is away (or
the landing table does not exist yet: dbt creates it), it waits and tries
again; entries stay pending in the stream meanwhile, nothing is lost.
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
from ml.warehouse.engine import held
from ml.warehouse.landing import LandingTableMissing

RETRY_SECONDS = (1, 2, 5, 10, 30)
LINGER_SECONDS = 0.5


def run(stop: threading.Event, *, report_seconds: float, linger_seconds: float = LINGER_SECONDS,
        log=print) -> None:
    """Drain until `stop` is set, restarting after warehouse or Redis errors."""
    settings = load_settings()
    warehouse = held(settings, reader=False)
    failures = 0
    try:
        while not stop.is_set():
            try:
                drain(settings, until=stop, report_seconds=report_seconds,
                      linger_seconds=linger_seconds, using=warehouse, log=log)
                failures = 0
            except (redis.RedisError, sa.exc.SQLAlchemyError, LandingTableMissing) as error:
                wait = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                log(f"[consumer] {type(error).__name__}: {error}; retrying in {wait} s")
                failures += 1
                stop.wait(wait)
    finally:
        warehouse.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-seconds", type=float, default=60.0,
                        help="seconds between progress reports (default %(default)s)")
    parser.add_argument("--linger-seconds", type=float, default=LINGER_SECONDS,
                        help="wait after a short batch before reading again (default %(default)s)")
    args = parser.parse_args()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run(stop, report_seconds=args.report_seconds, linger_seconds=args.linger_seconds,
        log=lambda line: print(line, file=sys.stderr, flush=True))


if __name__ == "__main__":
    main()
