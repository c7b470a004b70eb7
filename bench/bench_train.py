"""Benchmark: training time of each model at 16.6k and 1,000,000 mart rows.

    python -m bench.bench_train [--runs 3] [--large-runs 1]

`ml.modeling.train.fit` of each model (the one the pipeline calls) on the real mart
(`bench.marts`, 16.6k releases) and on a 1,000,000-row frame resampled from
it. "fit s" is the wall time of `fit()` (train split, input frame, pipeline
fit, data digest); "estimator s" the pipeline's `fit` alone; "CPU s" the
process's CPU time over `fit()` (the models use one OpenMP thread, so CPU
near wall means a core was free). Each figure is the median (min-max) of the
runs; at 1M rows a run takes minutes, so one by default (`--large-runs`).

Prints a markdown table and writes bench/results/train.json.
"""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd

from bench.common import Stats, machine, write_results
from ml.markdown import markdown_table
from bench.marts import real_mart, resampled
from ml.features import MODEL_NAMES
from ml.modeling.train import fit
from ml.settings import ROOT, load_settings

LARGE_ROWS = 1_000_000


def measure(model_name: str, frame: pd.DataFrame, runs: int, label: str) -> dict:
    walls, estimators, cpus = [], [], []
    for i in range(runs):
        cpu, started = time.process_time(), time.perf_counter()
        fitted = fit(model_name, frame)
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
        estimators.append(fitted.fit_seconds)
        print(f"[bench train] {model_name} {label} run {i + 1}/{runs}: fit {walls[-1]:.2f} s "
              f"(estimator {estimators[-1]:.2f} s, CPU {cpus[-1]:.2f} s), "
              f"{fitted.n_train:,} train rows", flush=True)
    return {
        "mart_rows": len(frame),
        "train_rows": fitted.n_train,
        "model_class": fitted.params["model_class"],
        "fit_s": Stats.of(walls),
        "estimator_s": Stats.of(estimators),
        "cpu_s": Stats.of(cpus),
    }


def table(results: dict) -> str:
    rows = []
    for model_name in MODEL_NAMES:
        for label in ("real", "large"):
            r = results[model_name][label]
            rows.append([
                f"`{model_name}` ({r['model_class']})",
                f"{r['mart_rows']:,}",
                f"{r['train_rows']:,}",
                r["fit_s"].cell(),
                r["estimator_s"].cell(),
                r["cpu_s"].cell(),
                f"{r['train_rows'] / r['estimator_s'].median:,.0f}",
                str(len(r["fit_s"].runs)),
            ])
    headers = ["model", "mart rows", "train rows", "fit s", "estimator s", "CPU s",
               "train rows/s", "runs"]
    return markdown_table(headers, rows, align="lrrrrrrr")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per model on the real mart")
    parser.add_argument("--large-runs", type=int, default=1, help="runs per model at 1M rows")
    args = parser.parse_args(argv)
    frame, source = real_mart(load_settings())
    large = resampled(frame, LARGE_ROWS)
    results: dict = {"machine": machine(), "source": source}
    for model_name in MODEL_NAMES:
        results[model_name] = {
            "real": measure(model_name, frame, args.runs, f"{len(frame):,} rows"),
            "large": measure(model_name, large, args.large_runs, f"{len(large):,} rows"),
        }
    results["machine"]["load_average_1m_after"] = machine()["load_average_1m"]
    print()
    print(table(results))
    print(f"\nReal mart: {source}; 1M rows resampled from it (bench/marts.py).")
    path = write_results("train", results)
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
