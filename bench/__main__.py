"""`make bench`: run every `bench/bench_*.py` in turn, each in its own process.

Each benchmark prints its markdown table and writes JSON to `bench/results/`;
at the end one table gathers their headline figures (`bench.summary`), also
written to `bench/results/summary.json` with each benchmark's duration.
`python -m bench seed serve` runs only the named ones.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.common import machine, write_results
from bench.summary import summarise

BENCH_DIR = Path(__file__).resolve().parent


def main(names: list[str]) -> int:
    available = sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))
    unknown = set(names) - set(available)
    if unknown:
        print(f"unknown benchmark(s) {sorted(unknown)}; available: {available}", file=sys.stderr)
        return 2
    failed = []
    since, total = time.time(), time.perf_counter()
    durations = {}
    context = machine()
    for name in names or available:
        print(f"\n== bench {name} ==", flush=True)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", f"bench.bench_{name}"], cwd=BENCH_DIR.parent)
        durations[name] = {"seconds": time.perf_counter() - started, "exit": result.returncode}
        print(f"== bench {name}: {durations[name]['seconds']:.0f} s, exit {result.returncode}")
        if result.returncode:
            failed.append(name)
    seconds = time.perf_counter() - total
    table, rows = summarise(since)
    context["load_average_1m_after"] = machine()["load_average_1m"]
    print(f"\n== summary: {seconds / 60:.1f} min in all ==\n")
    print(table)
    print("\n" + ", ".join(f"{n} {d['seconds']:.0f} s" for n, d in durations.items())
          + f"; load average (1 min) {context['load_average_1m']:.1f} before, "
          f"{context['load_average_1m_after']:.1f} after, on {context['cpus']} CPUs")
    write_results("summary", {"machine": context, "seconds": seconds,
                              "benches": durations, "rows": rows})
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
