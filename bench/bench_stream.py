"""Benchmark: how fast the prediction-log consumer lands rows, against the API.

    python -m bench.bench_stream [--runs 3] [--entries 20000]

The API appends one stream entry per request (`ml.monitoring.stream.append`);
the consumer (`ml.monitoring.drain`, run by `python -m ml.monitoring.consumer`)
lands them in `<db>_raw.raw_prediction_log`. This fills the stream with
`--entries` single-prediction entries (as `/predict` writes them) and, apart,
with 1,000-row batch entries, then times one drain of each: the consumer's
sustained rows/s. Beside it, the API's single-request throughput from the
last `bench serve` (bench/results/serve.json, which `make bench` writes just
before this): a ratio above 1 means the consumer keeps up with the API at
full speed and the stream stays far from its cap.

Uses Redis db 8 and the database `<MARIADB_DATABASE>_bench_stream` (dropped
afterwards). Prints a markdown table, writes bench/results/stream.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import redis
import sqlalchemy as sa

from bench.common import RESULTS_DIR, Stats, machine, markdown_table, write_results
from ml.monitoring.drain import drain
from ml.monitoring.stream import append, encode_entry
from ml.settings import ROOT, Settings, load_settings
from ml.warehouse.dbt_runner import run_dbt

REDIS_DB = 8
BATCH_ROWS = 1000
# What the writer thread sends per round trip (serve.prediction_log.BATCH).
WRITE_BATCH = 256
RECORD = {"platform": "Wii", "genre": "Racing", "year": 2008.0, "na_sales": 1.0,
          "eu_sales": 0.5, "jp_sales": 0.1, "other_sales": 0.1}


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


def create_landing_database(settings: Settings) -> bool:
    """`settings.mariadb_database` with the prediction log's landing tables
    (dbt's `create_monitoring_landing_tables`); False when dbt failed."""
    server = _server(settings)
    with server.begin() as connection:
        connection.execute(sa.text(
            f"create database if not exists `{settings.mariadb_database}`"))
    server.dispose()
    made = run_dbt(["run-operation", "create_monitoring_landing_tables"], settings,
                   log=lambda line: None,
                   target_path=ROOT / "bench" / "results" / f"target-{settings.mariadb_database}")
    return made.ok


def drop_landing_database(settings: Settings) -> None:
    """Drop what `create_landing_database` made (the database and its `_raw`)."""
    server = _server(settings)
    with server.begin() as connection:
        for suffix in ("", "_raw"):
            connection.execute(sa.text(
                f"drop database if exists `{settings.mariadb_database}{suffix}`"))
    server.dispose()


def _server(settings: Settings) -> sa.Engine:
    """An engine on the warehouse server, no database selected."""
    return sa.create_engine(settings.sqlalchemy_url().replace(
        f"/{settings.mariadb_database}?", "/?"))


def api_requests_per_s() -> float | None:
    path = RESULTS_DIR / "serve.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["service"]["requests_per_s"]["median"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--entries", type=int, default=20_000, help="single-prediction entries")
    args = parser.parse_args(argv)
    base = load_settings()
    settings = dataclasses.replace(
        base, mariadb_database=f"{base.mariadb_database}_bench_stream",
        redis_url=base.redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}",
    )
    if not create_landing_database(settings):
        print("dbt could not create the landing tables", file=sys.stderr)
        return 1
    client = redis.Redis.from_url(settings.redis_url)
    client.flushdb()
    results: dict = {"machine": machine(), "entries": args.entries, "batch_rows": BATCH_ROWS}
    try:
        results["single_rows_per_s"] = measure(
            settings, client, args.entries, 1, args.runs, "single")
        results["batch_rows_per_s"] = measure(
            settings, client, max(args.entries // BATCH_ROWS, 20), BATCH_ROWS, args.runs, "batch")
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
    path = write_results("stream", results)
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
