"""Benchmark: `dbt build` wall time as the raw file grows.

    python -m bench.bench_build [--runs 2] [--large-runs 1]

The whole warehouse build the pipeline runs (`dbt build`: seeds, models,
snapshot, tests) on the real vgsales.csv (16,598 rows), on its first 50 rows
(dbt's floor: every node still runs, over almost no data), on 100,000
synthetic rows (`ml.data.synthetic`, 1% dirty), `--runs` times each, and on
1,000,000 synthetic rows `--large-runs` times (0 leaves it out). Each size
is printed beside its goal: the wall time, and at 1M a time per
row no greater than at 100k.

"wall s" is the dbt process; "dbt s" dbt's own elapsed time (without start-up
and parsing); "dbt CPU s" the dbt process's CPU time and "MariaDB CPU s" the
server's over the same build (the stack is the benchmark's while it runs);
"seed s" the raw seed's node; the slowest node is named. Each
figure is the median (min-max) of the runs.

The real file builds into `<MARIADB_DATABASE>_bench_mart`, which is kept:
bench_snapshot and bench_train read its mart (bench/marts.py). The synthetic
sizes build into `<MARIADB_DATABASE>_bench_build`, dropped afterwards. Prints
a markdown table and writes bench/results/build.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import tempfile
import time
from pathlib import Path

import pymysql

from bench.bench_seed import count_rows
from bench.common import Stats, cpu_seconds, machine, write_results
from ml.markdown import markdown_table
from bench.marts import mart_settings, real_csv
from ml.data.synthetic import write_csv
from ml.settings import ROOT, Settings, load_settings
from ml.warehouse.dbt_runner import run_dbt

FLOOR_ROWS = 50
MEDIUM_ROWS = 100_000
LARGE_ROWS = 1_000_000
SEED_NODE = "seed.vgsales.vgsales"
# Wall-time goals of a `dbt build`, seed included, by size label.
GOALS_S = {"real": 8.0, f"{MEDIUM_ROWS}": 20.0, f"{LARGE_ROWS}": 150.0}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def mariadb_cpu(settings: Settings) -> float:
    """CPU seconds of the stack's MariaDB server so far."""
    return cpu_seconds(int((settings.run_dir / "mariadb" / "mariadb.pid").read_text()))


def build_once(settings: Settings, target: Path) -> dict:
    """One `dbt build`; its timings, the CPU of dbt and of MariaDB, the slowest node.

    dbt's CPU beside MariaDB's says which side the time is spent on: at the
    real file's size dbt's own per-node work, not the SQL."""
    cpu, server, started = children_cpu(), mariadb_cpu(settings), time.perf_counter()
    result = run_dbt(["build", "--no-use-colors"], settings, log=lambda line: None,
                     target_path=target)
    wall, cpu = time.perf_counter() - started, children_cpu() - cpu
    server = mariadb_cpu(settings) - server
    if result.run_results is None or result.errored or result.failed:
        raise RuntimeError(f"dbt build failed on {settings.mariadb_database}: "
                           f"{result.status_counts}; see {target}")
    nodes = {r["unique_id"]: r["execution_time"] for r in result.results}
    slowest = max(nodes, key=nodes.get)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "mariadb_cpu_s": server,
        "dbt_s": result.run_results["elapsed_time"],
        "seed_s": nodes[SEED_NODE],
        "nodes": len(nodes),
        "slowest": (slowest, nodes[slowest]),
    }


def measure(settings: Settings, target: Path, runs: int, label: str) -> dict:
    builds = []
    for i in range(runs):
        builds.append(build_once(settings, target))
        b = builds[-1]
        print(f"[bench build] {label} run {i + 1}/{runs}: {b['wall_s']:.1f} s wall "
              f"(dbt {b['dbt_s']:.1f} s, CPU {b['cpu_s']:.1f} s, MariaDB CPU "
              f"{b['mariadb_cpu_s']:.1f} s, seed {b['seed_s']:.1f} s), "
              f"slowest {b['slowest'][0]} {b['slowest'][1]:.1f} s", flush=True)
    return {
        **{key: Stats.of([b[key] for b in builds])
           for key in ("wall_s", "dbt_s", "cpu_s", "mariadb_cpu_s", "seed_s")},
        "nodes": builds[-1]["nodes"],
        "slowest": max((b["slowest"] for b in builds), key=lambda s: s[1]),
    }


def drop_databases(settings: Settings, prefix: str) -> None:
    """Drop `<prefix>` and every `<prefix>_*` database (dbt's schemas)."""
    connection = pymysql.connect(host=settings.mariadb_host, port=settings.mariadb_port,
                                 user=settings.mariadb_user,
                                 password=settings.mariadb_password.get_secret_value())
    try:
        with connection.cursor() as cursor:
            cursor.execute("show databases")
            for (name,) in cursor.fetchall():
                if name == prefix or name.startswith(prefix + "_"):
                    cursor.execute(f"drop database `{name}`")
    finally:
        connection.close()


def table(results: dict) -> str:
    rows = []
    for size in results["sizes"]:
        r = results[size]
        slowest, seconds = r["slowest"]
        rows.append([
            f"{r['rows']:,} ({r['source']})",
            r["wall_s"].cell(1),
            r["dbt_s"].cell(1),
            r["cpu_s"].cell(1),
            r["mariadb_cpu_s"].cell(1),
            r["seed_s"].cell(2),
            f"{slowest.split('.')[-1]} ({seconds:.1f} s)",
            f"{r['wall_s'].median / results[results['sizes'][0]]['wall_s'].median:.1f}x",
            str(len(r["wall_s"].runs)),
        ])
    headers = ["rows", "wall s", "dbt s", "dbt CPU s", "MariaDB CPU s", "seed s",
               "slowest node", "vs 16.6k", "runs"]
    return markdown_table(headers, rows, align="lrrrrrlrr")


def goals(results: dict) -> list[dict]:
    """Each size's median wall time against its goal, then the per-row one."""
    checks = []
    for label in results["sizes"]:
        if label in GOALS_S:
            goal, measured = GOALS_S[label], results[label]["wall_s"].median
            checks.append({"size": label, "rows": results[label]["rows"],
                           "target": f"wall <= {goal:g} s", "measured": f"{measured:.1f} s",
                           "met": measured <= goal, "over": f"{measured - goal:+.1f} s"})
    medium, large = (results.get(f"{rows}") for rows in (MEDIUM_ROWS, LARGE_ROWS))
    if medium and large:
        per_row = [r["wall_s"].median / r["rows"] * 1e6 for r in (medium, large)]
        checks.append({"size": "per_row", "rows": None, "target": "time per row <= at 100k",
                       "measured": f"{per_row[1]:.0f} vs {per_row[0]:.0f} µs/row",
                       "met": per_row[1] <= per_row[0],
                       "over": f"{per_row[1] - per_row[0]:+.0f} µs/row"})
    return checks


def goals_table(checks: list[dict]) -> str:
    rows = [[f"{c['rows']:,} rows" if c["rows"] else "1M against 100k", c["target"],
             c["measured"], "met" if c["met"] else f"missed ({c['over']})"] for c in checks]
    return markdown_table(["size", "goal", "measured (median)", ""], rows,
                          align="llrl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="builds of 16.6k and 100k rows")
    parser.add_argument("--large-runs", type=int, default=1, help="builds of 1,000,000 rows")
    args = parser.parse_args(argv)
    base = load_settings()
    scratch = f"{base.mariadb_database}_bench_build"
    results: dict = {"machine": machine(), "sizes": []}
    with tempfile.TemporaryDirectory(prefix="bench-build-") as folder:
        home = Path(folder)
        csv_path, source = real_csv(base, home)
        sizes = [("real", csv_path, source, args.runs)]
        # dbt's floor: the same build on a file too small for the SQL to matter.
        floor = home / "floor" / "vgsales.csv"
        floor.parent.mkdir()
        with csv_path.open("rb") as full:
            floor.write_bytes(b"".join(full.readline() for _ in range(FLOOR_ROWS + 1)))
        sizes.append(("floor", floor, f"first {FLOOR_ROWS} rows of the {source}", args.runs))
        for rows, runs in ((MEDIUM_ROWS, args.runs), (LARGE_ROWS, args.large_runs)):
            if not runs:
                continue
            path = write_csv(home / f"{rows}" / "vgsales.csv", rows, seed=0)
            sizes.append((f"{rows}", path, "synthetic", runs))
        try:
            for label, path, source, runs in sizes:
                if label == "real":
                    settings = mart_settings(base, path)
                else:  # a first build each: no earlier load in its history
                    drop_databases(base, scratch)
                    settings = dataclasses.replace(
                        base, mariadb_database=scratch, vgsales_seeds_dir=str(path.parent))
                rows = count_rows(path)
                measured = measure(settings, home / f"target-{label}", runs, f"{rows:,} rows")
                results[label] = {"rows": rows, "source": source, **measured}
                results["sizes"].append(label)
        finally:
            drop_databases(base, scratch)
    results["machine"]["load_average_1m_after"] = machine()["load_average_1m"]
    results["goals"] = goals(results)
    print()
    print(table(results))
    print()
    print(goals_table(results["goals"]))
    path = write_results("build", results)
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
