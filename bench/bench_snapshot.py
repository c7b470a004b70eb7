"""Benchmark: the ML mart's Redis round trip against an in-process copy.

    python -m bench.bench_snapshot [--runs 5] [--large-runs 3]

The pipeline hands the mart to training through Redis (`ml.warehouse.snapshot`: Arrow
IPC, zstd): serialise, SET, GET, deserialise. This measures each step and
their sum against `frame.copy(deep=True)`, the cheapest way to hand a frame
over inside one process, on the real mart (16.6k rows, `bench.marts`) and on
a 1,000,000-row frame resampled from it, or as many rows as fit the
snapshot's payload cap when 1M do not. The round trip is checked to give
back the frame exactly. Each figure is the median (min-max) of the runs.

Uses Redis db 7 (key `vgsales:bench:snapshot`, deleted afterwards). Prints a
markdown table and writes bench/results/snapshot.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import pandas as pd
from pandas.testing import assert_frame_equal

from bench.common import Stats, machine, write_results
from ml.markdown import markdown_table
from bench.marts import real_mart, resampled
from ml.settings import ROOT, load_settings
from ml.warehouse import snapshot

REDIS_DB = 7
KEY = "vgsales:bench:snapshot"
LARGE_ROWS = 1_000_000
STEPS = ("serialise", "set", "get", "deserialise")


def round_trip(client, frame: pd.DataFrame) -> tuple[dict[str, float], bytes, pd.DataFrame]:
    """Seconds of each step, the payload and the frame read back."""
    seconds = {}
    started = time.perf_counter()
    payload = snapshot.frame_to_ipc(frame)
    seconds["serialise"] = time.perf_counter() - started
    started = time.perf_counter()
    client.set(KEY, payload, ex=600)
    seconds["set"] = time.perf_counter() - started
    started = time.perf_counter()
    stored = client.get(KEY)
    seconds["get"] = time.perf_counter() - started
    started = time.perf_counter()
    back = snapshot.ipc_to_frame(stored)
    seconds["deserialise"] = time.perf_counter() - started
    return seconds, payload, back


def measure(client, frame: pd.DataFrame, runs: int, label: str) -> dict:
    steps: dict[str, list[float]] = {step: [] for step in STEPS}
    totals, copies = [], []
    for i in range(runs):
        started = time.perf_counter()
        frame.copy(deep=True)
        copies.append(time.perf_counter() - started)
        seconds, payload, back = round_trip(client, frame)
        if i == 0:
            assert_frame_equal(back, frame, check_exact=True)
        for step in STEPS:
            steps[step].append(seconds[step])
        totals.append(sum(seconds.values()))
        print(f"[bench snapshot] {label} run {i + 1}/{runs}: round trip {totals[-1]:.3f} s, "
              f"copy {copies[-1]:.4f} s", flush=True)
    return {
        "rows": len(frame),
        "payload_mb": len(payload) / 1e6,
        "frame_mb": frame.memory_usage(deep=True).sum() / 1e6,
        "copy_s": Stats.of(copies),
        "round_trip_s": Stats.of(totals),
        **{f"{step}_s": Stats.of(values) for step, values in steps.items()},
    }


def table(results: dict) -> str:
    rows = []
    for label in ("real", "large"):
        r = results[label]
        rows.append([
            f"{r['rows']:,}",
            f"{r['frame_mb']:.0f} / {r['payload_mb']:.1f}",
            r["copy_s"].scaled(1000).cell(1),
            *(r[f"{step}_s"].scaled(1000).cell(1) for step in STEPS),
            r["round_trip_s"].scaled(1000).cell(1),
            f"{r['round_trip_s'].median / r['copy_s'].median:.0f}x",
            str(len(r["round_trip_s"].runs)),
        ])
    headers = ["rows", "frame / payload MB", "copy ms", *(f"{s} ms" for s in STEPS),
               "round trip ms", "vs copy", "runs"]
    return markdown_table(headers, rows, align="lrrrrrrrrr")


def largest_under_cap(frame: pd.DataFrame) -> pd.DataFrame:
    """`LARGE_ROWS` resampled rows, or as many as fit the snapshot's payload cap
    (`snapshot.MAX_PAYLOAD_BYTES`; Redis refuses larger values outright)."""
    large = resampled(frame, LARGE_ROWS)
    size = len(snapshot.frame_to_ipc(large))
    if size <= snapshot.MAX_PAYLOAD_BYTES:
        return large
    rows = int(LARGE_ROWS * snapshot.MAX_PAYLOAD_BYTES / size * 0.95)
    print(f"[bench snapshot] {LARGE_ROWS:,} rows make a {size / 2**20:.0f} MB payload, over the "
          f"{snapshot.MAX_PAYLOAD_BYTES / 2**20:.0f} MB cap: measuring {rows:,} rows", flush=True)
    return resampled(frame, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs on the real mart")
    parser.add_argument("--large-runs", type=int, default=3, help="runs at 1M rows")
    args = parser.parse_args(argv)
    base = load_settings()
    settings = dataclasses.replace(
        base, redis_url=base.redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    )
    frame, source = real_mart(settings)
    large = largest_under_cap(frame)
    results: dict = {"machine": machine(), "source": source}
    client = snapshot.connect(settings.redis_url)
    try:
        results["real"] = measure(client, frame, args.runs, f"{len(frame):,} rows")
        results["large"] = measure(client, large, args.large_runs, f"{len(large):,} rows")
    finally:
        client.delete(KEY)
        client.close()
    results["machine"]["load_average_1m_after"] = machine()["load_average_1m"]
    print()
    print(table(results))
    print(f"\nReal mart: {source}; {len(large):,} rows resampled from it (bench/marts.py).")
    path = write_results("snapshot", results)
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
