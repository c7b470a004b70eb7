"""Benchmark: `dbt seed` of vgsales.csv, dbt's stock loader against ours, and LOAD DATA.

    python -m bench.bench_seed [--runs 2] [--large-runs 1] [--stock-runs 1] [--full]

Two sizes: the real file (16,598 rows; a synthetic file of that size when it
is absent) and 1,000,000 synthetic rows (`ml.data.synthetic`). Three loaders:

- stock: `dbt seed --vars '{seed_loader: stock}'`, dbt's default row binding;
- ours: `dbt seed`, the JSON_TABLE batches of dbt_project/macros/seed/;
- LOAD DATA: `LOAD DATA LOCAL INFILE` through pymysql into a scratch table
  (the floor; not a dbt path, and it reads empty cells as '' where dbt
  stores NULL).

"load s" is dbt's own timing of the seed node: reading the CSV into agate,
creating the table and inserting, without dbt's start-up and parsing, which
"dbt s" (the whole process) adds. "insert s" is the part spent inserting, as
recorded in seed_load_audit. "dbt CPU s" is the CPU time of the dbt process
(MariaDB's is not included): on a busy machine it shows how much of the wall
time is waiting for a core. "vs LOAD DATA" is the load time over LOAD DATA's
at the same size, the headline. Each figure is the median (min-max) of the
runs (`--large-runs` at 1M rows, to keep `make bench` under ten minutes).
The stock loader needs about half an hour at 1M rows: by default its 1M
figures are its runs on the real file scaled by the row ratio (its cost is
per cell), marked "extrapolated"; `--full` measures it.

Everything runs in the database `<MARIADB_DATABASE>_bench_seed` (and its
`_raw`), dropped at the end. Prints a markdown table and writes
bench/results/seed.json. Goals: the real file loads in <= 1 s, 1M rows in <= 30 s.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pymysql

from bench.common import Stats, machine, write_results
from ml.markdown import markdown_table
from ml.data.synthetic import write_csv
from ml.settings import ROOT, Settings, load_settings
from ml.warehouse.dbt_runner import dbt_environment

REAL_ROWS = 16_598
LARGE_ROWS = 1_000_000
GOALS_S = {"real": 1.0, "large": 30.0}  # at 16,598 and 1,000,000 rows
SEED_NODE = "seed.vgsales.vgsales"
SCRATCH_TABLE = "bench_seed_load_data"


@dataclass(frozen=True)
class SeedRun:
    load_s: float  # dbt's execution time of the seed node
    dbt_s: float  # the whole dbt process
    cpu_s: float  # CPU (user + system) of the dbt process, not MariaDB's
    insert_s: float  # seed_load_audit.load_seconds


def real_csv(settings: Settings, folder: Path) -> tuple[Path, str]:
    """The real vgsales.csv when present, else a synthetic file of its size."""
    shared = ROOT.parent / "shared" / "data" / "vgsales.csv"
    for candidate in (settings.seeds_dir / "vgsales.csv", shared):
        if candidate.is_file():
            return candidate, "real file"
    return write_csv(folder / "real.csv", REAL_ROWS, seed=0), "synthetic, real file absent"


def connect(settings: Settings) -> pymysql.Connection:
    return pymysql.connect(
        host=settings.mariadb_host,
        port=settings.mariadb_port,
        user=settings.mariadb_user,
        password=settings.mariadb_password.get_secret_value(),
        charset="utf8mb4",
        local_infile=True,
    )


def dbt_seed(settings: Settings, target: Path, loader: str) -> SeedRun:
    """One `dbt seed --full-refresh` of vgsales with `loader` ('stock' or 'json_table')."""
    args = [sys.executable, "-m", "dbt.cli.main", "seed", "--full-refresh"]
    args += ["--select", "vgsales.vgsales", "--target-path", str(target)]
    args += ["--vars", json.dumps({"seed_loader": loader})]
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        args,
        cwd=settings.dbt_project_dir,
        env={**os.environ, **dbt_environment(settings)},
        capture_output=True,
        text=True,
    )
    dbt_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    if result.returncode:
        raise RuntimeError(
            f"dbt seed ({loader}) failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}"
        )
    run_results = json.loads((target / "run_results.json").read_text())
    (node,) = [r for r in run_results["results"] if r["unique_id"] == SEED_NODE]
    with connect(settings) as connection, connection.cursor() as cursor:
        cursor.execute(
            f"select load_seconds from `{settings.raw_database}`.seed_load_audit"
            " where invocation_id = %s and seed_name = 'vgsales'",
            (run_results["metadata"]["invocation_id"],),
        )
        (insert_s,) = cursor.fetchone()
    return SeedRun(node["execution_time"], dbt_s, cpu_s, float(insert_s))


def load_data(settings: Settings, csv_path: Path) -> float:
    """Seconds for LOAD DATA LOCAL INFILE of `csv_path` into the scratch table."""
    table = f"`{settings.mariadb_database}`.{SCRATCH_TABLE}"
    with connect(settings) as connection, connection.cursor() as cursor:
        cursor.execute(f"create database if not exists `{settings.mariadb_database}`")
        cursor.execute(
            f"create table if not exists {table} like `{settings.raw_database}`.raw_vgsales"
        )
        cursor.execute(f"truncate table {table}")
        started = time.perf_counter()
        cursor.execute(
            f"load data local infile %s into table {table} character set utf8mb4"
            " fields terminated by ',' optionally enclosed by '\"' escaped by ''"
            " lines terminated by '\\n' ignore 1 lines",
            (str(csv_path),),
        )
        connection.commit()
        seconds = time.perf_counter() - started
        cursor.execute(f"select count(*) from {table}")
        (count,) = cursor.fetchone()
    expected = count_rows(csv_path)
    if count != expected:
        raise RuntimeError(f"LOAD DATA stored {count} rows of {csv_path}'s {expected}")
    return seconds


def count_rows(csv_path: Path) -> int:
    """Data records in the file (quoted newlines make lines a poor count)."""
    with csv_path.open(encoding="utf-8", newline="") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


def measure_dbt(settings: Settings, target: Path, loader: str, runs: int, label: str) -> dict:
    results = []
    for i in range(runs):
        run = dbt_seed(settings, target, loader)
        print(
            f"[bench seed] {label} {loader} run {i + 1}/{runs}: load {run.load_s:.2f} s "
            f"(insert {run.insert_s:.2f} s), dbt {run.dbt_s:.1f} s, {run.cpu_s:.1f} s CPU",
            flush=True,
        )
        results.append(run)
    return {
        "load_s": Stats.of([r.load_s for r in results]),
        "dbt_s": Stats.of([r.dbt_s for r in results]),
        "cpu_s": Stats.of([r.cpu_s for r in results]),
        "insert_s": Stats.of([r.insert_s for r in results]),
    }


def measure_load_data(settings: Settings, csv_path: Path, runs: int, label: str) -> dict:
    seconds = []
    for i in range(runs):
        seconds.append(load_data(settings, csv_path))
        print(f"[bench seed] {label} LOAD DATA run {i + 1}/{runs}: {seconds[-1]:.2f} s", flush=True)
    return {"load_s": Stats.of(seconds)}


def with_seed(settings: Settings, home: Path, name: str, csv_path: Path) -> Settings:
    """`settings` whose seeds folder holds only a copy of `csv_path`."""
    folder = home / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(csv_path, folder / "vgsales.csv")
    return dataclasses.replace(settings, vgsales_seeds_dir=str(folder))


def bench_size(
    settings: Settings, home: Path, label: str, csv_path: Path, args, real: dict | None = None
) -> dict:
    """All three loaders on one file; stock on the large file is extrapolated
    from the `real` file's stock runs unless --full."""
    rows = count_rows(csv_path)
    sized = with_seed(settings, home, label, csv_path)
    out: dict = {"rows": rows}
    runs = args.runs if label == "real" else args.large_runs
    out["ours"] = measure_dbt(sized, home / f"target-{label}-ours", "json_table", runs, label)
    out["load_data"] = measure_load_data(sized, csv_path, args.runs, label)
    if label == "real" or args.full:
        runs = args.stock_runs if label == "real" else 1
        out["stock"] = measure_dbt(sized, home / f"target-{label}-stock", "stock", runs, label)
        return out
    scale = rows / real["rows"]
    out["stock"] = {key: real["stock"][key].scaled(scale) for key in ("load_s", "insert_s")}
    out["stock"]["extrapolated_from_rows"] = real["rows"]
    return out


LOADERS = (
    ("stock", "dbt seed, stock"),
    ("ours", "dbt seed, ours"),
    ("load_data", "LOAD DATA LOCAL INFILE"),
)


def table(results: dict) -> str:
    rows = []
    for label in ("real", "large"):
        size = results[label]
        for loader, name in LOADERS:
            r = size[loader]
            sample = r.get("extrapolated_from_rows")
            note = f"extrapolated from the {sample:,}-row runs" if sample else ""
            rows.append(
                [
                    f"{size['rows']:,} ({size['source']})",
                    name,
                    r["load_s"].cell(),
                    r["insert_s"].cell() if "insert_s" in r else "–",
                    r["dbt_s"].cell(1) if "dbt_s" in r else "–",
                    r["cpu_s"].cell(1) if "cpu_s" in r else "–",
                    f"{size['rows'] / r['load_s'].median:,.0f}",
                    f"{r['load_s'].median / size['load_data']['load_s'].median:.1f}x",
                    str(len(r["load_s"].runs)),
                    note,
                ]
            )
    headers = ["rows", "loader", "load s", "insert s", "dbt s", "dbt CPU s", "rows/s",
               "vs LOAD DATA", "runs"]
    return markdown_table([*headers, "note"], rows, align="llrrrrrrrl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="runs of ours and LOAD DATA per size")
    parser.add_argument("--large-runs", type=int, default=1, help="runs of ours at 1M rows")
    parser.add_argument("--stock-runs", type=int, default=1, help="stock runs on the real file")
    parser.add_argument("--full", action="store_true", help="measure stock at 1M rows (~30 min)")
    parser.add_argument("--large-rows", type=int, default=LARGE_ROWS, help="synthetic file size")
    args = parser.parse_args(argv)
    base = load_settings()
    settings = dataclasses.replace(base, mariadb_database=f"{base.mariadb_database}_bench_seed")
    results: dict = {"machine": machine(), "goals_s": GOALS_S}
    with tempfile.TemporaryDirectory(prefix="bench-seed-") as folder:
        home = Path(folder)
        real, source = real_csv(settings, home)
        started = time.perf_counter()
        large = write_csv(home / "large.csv", args.large_rows, seed=0)
        print(
            f"[bench seed] wrote {args.large_rows:,} synthetic rows"
            f" in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        try:
            results["real"] = {"source": source, **bench_size(settings, home, "real", real, args)}
            large_results = bench_size(settings, home, "large", large, args, results["real"])
            results["large"] = {"source": "synthetic", **large_results}
        finally:
            with connect(settings) as connection, connection.cursor() as cursor:
                cursor.execute(f"drop database if exists `{settings.raw_database}`")
                cursor.execute(f"drop database if exists `{settings.mariadb_database}`")
    results["machine"]["load_average_1m_after"] = os.getloadavg()[0]
    for label in ("real", "large"):
        floor = results[label]["load_data"]["load_s"].median
        results[label]["ratio_to_load_data"] = {
            loader: results[label][loader]["load_s"].median / floor for loader in ("stock", "ours")
        }
    results["goals_met"] = {
        label: results[label]["ours"]["load_s"].median <= goal for label, goal in GOALS_S.items()
    }
    print()
    print(table(results))
    print()
    for label in ("real", "large"):
        ratios = results[label]["ratio_to_load_data"]
        print(f"- {results[label]['rows']:,} rows: ours takes {ratios['ours']:.1f}x LOAD DATA's "
              f"time, stock {ratios['stock']:.0f}x")
    for label, goal in GOALS_S.items():
        met = "met" if results["goals_met"][label] else "NOT met"
        print(f"- goal: {results[label]['rows']:,} rows load in <= {goal:g} s with ours: {met}")
    print(f"- load average (1 min) before/after: {results['machine']['load_average_1m']:.1f} / "
          f"{results['machine']['load_average_1m_after']:.1f} on {results['machine']['cpus']} CPUs")
    path = write_results("seed", results)
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
