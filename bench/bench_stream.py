"""Benchmark: the prediction log's path, from the API's append to the warehouse.

    python -m bench.bench_stream [--runs 3] [--entries 20000] [--seconds 8] [--repeats 3]

1. Drain throughput: fills the stream with `--entries` single-prediction
   entries (as `/predict` writes them, through the append function) and,
   apart, with 1,000-row batch entries, then times one drain of each: the
   consumer's sustained rows/s. Beside it, the API's single-request
   throughput from the last `bench serve` (bench/results/serve.json, which
   `make bench` writes just before this): a ratio above 1 means the consumer
   keeps up with the API at full speed.
2. The live path (`bench.log_path`): `python -m serve` with the consumer
   beside it, driven at 1 and 4 connections; CPU per 1,000 predictions of
   each process (API, consumer, Redis, MariaDB), Redis commands and MariaDB
   statements per 1,000 predictions. Goal: the consumer at most 10% of the
   API's CPU, at 1 and at 4 connections.

Uses Redis db 8 and the database `<MARIADB_DATABASE>_bench_stream` (dropped
afterwards; the model is trained on the bench mart, `bench.marts`). Prints
markdown tables, writes bench/results/stream.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import redis
import sqlalchemy as sa

from bench.common import RESULTS_DIR, Stats, free_port, machine, write_results
from ml.markdown import markdown_table
from bench.log_path import measure_live
from ml.monitoring.drain import drain
from ml.monitoring.stream import append, encode_entry
from ml.settings import ROOT, Settings, load_settings
from tests.helpers import create_landing_tables

REDIS_DB = 8
BATCH_ROWS = 1000
# Entries per append call (as a busy worker's group commit might send).
WRITE_BATCH = 256
RECORD = {"platform": "Wii", "genre": "Racing", "year": 2008.0, "na_sales": 1.0,
          "eu_sales": 0.5, "jp_sales": 0.1, "other_sales": 0.1}
# The consumer's share of the API's CPU per prediction, at most.
CONSUMER_SHARE_GOAL = 0.10


def fill(client: redis.Redis, entries: int, rows_per_entry: int) -> None:
    """`entries` entries of `rows_per_entry` predictions each, as the API writes them."""
    records, values, unseen = [RECORD] * rows_per_entry, [1.7] * rows_per_entry, [[]] * rows_per_entry
    for start in range(0, entries, WRITE_BATCH):
        batch = [
            (encode_entry(time.time(), "/bench", f"bench-{start + i}", "global_from_regional",
                          "1", records, values, unseen), rows_per_entry)
            for i in range(min(WRITE_BATCH, entries - start))
        ]
        written, refused = append(client, batch, max_bytes=1 << 40)
        assert refused == 0 and written == len(batch) * rows_per_entry


def measure(settings: Settings, client: redis.Redis, entries: int, rows_per_entry: int,
            runs: int, label: str) -> Stats:
    rates = []
    for run in range(runs):
        fill(client, entries, rows_per_entry)
        started = time.perf_counter()
        outcome = drain(settings, log=lambda line: None)
        seconds = time.perf_counter() - started
        assert outcome.inserted == entries * rows_per_entry, outcome
        rates.append(outcome.inserted / seconds)
        print(f"[bench stream] {label} run {run + 1}/{runs}: {outcome.inserted:,} rows "
              f"in {seconds:.2f} s, {rates[-1]:,.0f} rows/s", flush=True)
    return Stats.of(rates)


def create_landing_database(settings: Settings) -> None:
    """`settings.mariadb_database` with the prediction log's landing tables."""
    create_landing_tables(settings, RESULTS_DIR / f"target-{settings.mariadb_database}")


def drop_landing_database(settings: Settings) -> None:
    """Drop what `create_landing_database` made (the database and its `_raw`)."""
    server = sa.create_engine(settings.sqlalchemy_url().replace(
        f"/{settings.mariadb_database}?", "/?"), poolclass=sa.pool.NullPool)
    with server.begin() as connection:
        for suffix in ("", "_raw"):
            connection.execute(sa.text(
                f"drop database if exists `{settings.mariadb_database}{suffix}`"))
    server.dispose()


def api_requests_per_s() -> float | None:
    path = RESULTS_DIR / "serve.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["service"]["requests_per_s"]["median"]


def live_table(live: dict[int, dict[str, Stats]]) -> tuple[str, dict[int, bool]]:
    """The live path's table, and per number of connections whether the goal is met."""
    rows, met = [], {}
    for connections, stats in live.items():
        share = stats["cpu_ms.consumer"].median / stats["cpu_ms.api"].median
        met[connections] = share <= CONSUMER_SHARE_GOAL
        rows.append([
            str(connections), stats["cpu_ms.api"].cell(0), stats["cpu_ms.consumer"].cell(0),
            f"{share:.0%}", stats["cpu_ms.redis"].cell(0), stats["cpu_ms.mariadb"].cell(0),
            stats["redis_calls"].cell(0), stats["mariadb.questions"].cell(0),
            stats["mariadb.com_commit"].cell(1),
        ])
    return markdown_table(
        ["connections", "API CPU ms", "consumer CPU ms", "consumer / API", "Redis CPU ms",
         "MariaDB CPU ms", "Redis commands", "MariaDB statements", "commits"],
        rows, align="lrrrrrrrr",
    ), met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--entries", type=int, default=20_000, help="single-prediction entries")
    parser.add_argument("--seconds", type=float, default=8, help="load per live run")
    parser.add_argument("--repeats", type=int, default=3, help="live runs per connection count")
    args = parser.parse_args(argv)

    from bench.marts import real_mart
    from tests.api_server import register_champions

    base = load_settings()
    results: dict = {"machine": machine(), "entries": args.entries, "batch_rows": BATCH_ROWS}
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as folder:
        home = Path(folder)
        settings = dataclasses.replace(
            base, mariadb_database=f"{base.mariadb_database}_bench_stream",
            redis_url=base.redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}",
            mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
            mlflow_artifact_root=str(home / "artifacts"), api_port=free_port(),
        )
        create_landing_database(settings)
        client = redis.Redis.from_url(settings.redis_url)
        client.flushdb()
        try:
            results["single_rows_per_s"] = measure(
                settings, client, args.entries, 1, args.runs, "single")
            results["batch_rows_per_s"] = measure(
                settings, client, max(args.entries // BATCH_ROWS, 20), BATCH_ROWS, args.runs,
                "batch")
            mart, source = real_mart(base)
            print(f"[bench stream] training global_from_regional on the bench mart ({source})",
                  flush=True)
            register_champions(settings, mart, models=("global_from_regional",))
            live = measure_live(settings, home, seconds=args.seconds, repeats=args.repeats,
                                connections=(1, 4))
        finally:
            client.flushdb()
            client.close()
            drop_landing_database(settings)
    api = api_requests_per_s()
    results["api_requests_per_s"] = api
    single = results["single_rows_per_s"]
    ratio = f"{single.median / api:.1f}x" if api else "no bench serve result"
    results["machine"]["load_average_1m_after"] = machine()["load_average_1m"]
    print()
    print(markdown_table(
        ["entries", "consumer rows/s", "API requests/s (bench serve)", "consumer / API"],
        [[f"{args.entries:,} single", single.cell(0), f"{api:,.0f}" if api else "-", ratio],
         [f"{BATCH_ROWS:,}-row batches", results["batch_rows_per_s"].cell(0), "-", "-"]],
        align="lrrr",
    ))
    table, met = live_table(live)
    print("\nPer 1,000 /predict answers, every process counted (median, min-max):\n")
    print(table)
    for connections, ok in met.items():
        print(f"- goal consumer <= {CONSUMER_SHARE_GOAL:.0%} of the API's CPU at "
              f"{connections} connection(s): {'met' if ok else 'NOT met'}")
    results["live"] = {str(k): v for k, v in live.items()}
    results["goals"] = {f"consumer_share_{k}": ok for k, ok in met.items()}
    path = write_results("stream", results)
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
