"""One table of the headline figures of every benchmark, from their JSON results.

`python -m bench` calls `summarise` after the benchmarks have run; each
benchmark keeps its own detailed table and JSON. A row per figure: the
median, min and max of its runs, in the unit named. Results files older than
this invocation are left out, so the table never mixes two runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from bench.common import RESULTS_DIR
from ml.markdown import markdown_table

Row = dict[str, object]


def _row(bench: str, measure: str, size: str, stats: dict, unit: str, scale: float = 1.0,
         note: str = "") -> Row:
    return {
        "bench": bench, "measure": measure, "size": size, "unit": unit,
        "median": stats["median"] * scale, "min": stats["min"] * scale,
        "max": stats["max"] * scale, "runs": len(stats["runs"]), "note": note,
    }


def _rows_label(rows: int) -> str:
    return f"{rows:,} rows"


def build_rows(r: dict) -> Iterator[Row]:
    goals = {check["size"]: check for check in r.get("goals", [])}
    for size in r["sizes"]:
        check = goals.get(size)
        note = f"{check['target']}: {'met' if check['met'] else 'missed'}" if check else ""
        if size == "floor":
            note = "dbt's floor: every node over almost no data"
        yield _row("build", "dbt build", _rows_label(r[size]["rows"]), r[size]["wall_s"], "s",
                   note=note)


def seed_rows(r: dict) -> Iterator[Row]:
    names = {"stock": "dbt seed, stock", "ours": "dbt seed, ours", "load_data": "LOAD DATA"}
    for label in ("real", "large"):
        size = r[label]
        floor = size["load_data"]["load_s"]["median"]
        for loader, name in names.items():
            stats = size[loader]["load_s"]
            note = f"{stats['median'] / floor:.1f}x LOAD DATA" if loader != "load_data" else ""
            if size[loader].get("extrapolated_from_rows"):
                note += ", extrapolated"
            yield _row("seed", name, _rows_label(size["rows"]), stats, "s", note=note)


def serve_rows(r: dict) -> Iterator[Row]:
    for design in ("service", "original"):
        d = r[design]
        yield _row("serve", f"{design}: single p50", "1 row", d["p50_ms"], "ms")
        yield _row("serve", f"{design}: single throughput", "1 row", d["requests_per_s"], "req/s")
        yield _row("serve", f"{design}: batch throughput", f"{r['batch_rows']:,} rows",
                   d["batch_rows_per_s"], "rows/s")
        yield _row("serve", f"{design}: failed requests", "all", d["failed_requests"], "")


def snapshot_rows(r: dict) -> Iterator[Row]:
    for label in ("real", "large"):
        size = r[label]
        ratio = size["round_trip_s"]["median"] / size["copy_s"]["median"]
        yield _row("snapshot", "Redis round trip", _rows_label(size["rows"]),
                   size["round_trip_s"], "ms", 1000, f"{ratio:.0f}x the copy")
        yield _row("snapshot", "in-process copy", _rows_label(size["rows"]),
                   size["copy_s"], "ms", 1000)


def train_rows(r: dict) -> Iterator[Row]:
    for model_name, sizes in r.items():
        if not isinstance(sizes, dict) or "real" not in sizes:
            continue
        for label in ("real", "large"):
            size = sizes[label]
            yield _row("train", f"fit {model_name}", _rows_label(size["mart_rows"]),
                       size["fit_s"], "s", note=f"{size['train_rows']:,} train rows")


def slow_clients_rows(r: dict) -> Iterator[Row]:
    for phase, label in (("quiet", "quiet"), ("attacked", f"{r['slow_clients']} slow clients")):
        yield _row("slow_clients", f"/predict p50, {label}", "1 row", r[phase]["p50_ms"], "ms")
        yield _row("slow_clients", f"/predict p99, {label}", "1 row", r[phase]["p99_ms"], "ms")


def throughput_rows(r: dict) -> Iterator[Row]:
    for label, by_connections in r["measured"].items():
        for connections, m in by_connections.items():
            size = f"1 row, {connections} conn."
            yield _row("throughput", f"{label} through nginx", size, m["requests_per_s"],
                       "req/s", note=f"{sum(m['cpu_ms_per_1000'].values()):.0f} ms CPU per 1,000")
            yield _row("throughput", f"{label} p50", size, m["p50_ms"], "ms")
    missed = [g["measure"] for g in r["goals"] if not g["met"]]
    failed = r["kill"]["non_2xx"] + r["kill"]["socket_errors"]
    yield _row("throughput", "kill -9 of an instance: failed requests", "all",
               {"median": failed, "min": failed, "max": failed, "runs": [failed]}, "",
               note=f"goals missed: {len(missed)} of {len(r['goals'])}")


def stream_rows(r: dict) -> Iterator[Row]:
    api = r.get("api_requests_per_s")
    note = f"{r['single_rows_per_s']['median'] / api:.1f}x the API's req/s" if api else ""
    yield _row("stream", "consumer, single entries", f"{r['entries']:,} rows",
               r["single_rows_per_s"], "rows/s", note=note)
    yield _row("stream", "consumer, batch entries", f"{r['batch_rows']:,}-row entries",
               r["batch_rows_per_s"], "rows/s")
    for connections, live in r.get("live", {}).items():
        api, consumer = live["cpu_ms.api"], live["cpu_ms.consumer"]
        share = consumer["median"] / api["median"]
        yield _row("stream", f"consumer CPU per 1,000 /predict, {connections} conn.", "1 row",
                   consumer, "ms", note=f"{share:.0%} of the API's (goal <= 10%)")


EXTRACTORS = {
    "build": build_rows,
    "seed": seed_rows,
    "serve": serve_rows,
    "slow_clients": slow_clients_rows,
    "snapshot": snapshot_rows,
    "stream": stream_rows,
    "throughput": throughput_rows,
    "train": train_rows,
}


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value < 10 else f"{value:.1f}"


def summarise(since: float, results_dir: Path = RESULTS_DIR) -> tuple[str, list[Row]]:
    """The markdown table and rows of the results written after `since` (epoch s)."""
    rows: list[Row] = []
    for name, extract in EXTRACTORS.items():
        path = results_dir / f"{name}.json"
        if path.exists() and path.stat().st_mtime >= since:
            rows.extend(extract(json.loads(path.read_text())))
    cells = [
        [str(r["bench"]), str(r["measure"]), str(r["size"]), _number(r["median"]),
         f"{_number(r['min'])}–{_number(r['max'])}", str(r["runs"]), str(r["unit"]),
         str(r["note"])]
        for r in rows
    ]
    headers = ["bench", "measure", "size", "median", "min–max", "runs", "unit", "note"]
    return markdown_table(headers, cells, align="lllrrrll"), rows
