"""`make bench`: run every `bench/bench_*.py` in turn, each in its own process.

Each benchmark prints its markdown table and writes JSON to `bench/results/`.
`python -m bench seed serve` runs only the named ones.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def main(names: list[str]) -> int:
    available = sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))
    unknown = set(names) - set(available)
    if unknown:
        print(f"unknown benchmark(s) {sorted(unknown)}; available: {available}", file=sys.stderr)
        return 2
    failed = []
    for name in names or available:
        print(f"\n== bench {name} ==", flush=True)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", f"bench.bench_{name}"], cwd=BENCH_DIR.parent)
        print(f"== bench {name}: {time.perf_counter() - started:.0f} s, exit {result.returncode}")
        if result.returncode:
            failed.append(name)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
