"""Run the vgsales pipeline: `python -m flows.pipeline` (what `make run` calls).

dbt seed + build, the ML mart into Redis, both models trained, evaluated and
registered, the API told about new champions. Prefect runs in ephemeral mode
(a temporary local server, 8-14 s to start) unless PREFECT_API_URL names a
server. Exit status 0 when the run completed (degraded included) and its
summary is printed; 1 when it failed (Prefect's log above says where).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from ml.settings import export_to_environ, load_settings
from ml.warehouse.snapshot import DEFAULT_TTL_SECONDS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flows.pipeline", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--skip-dbt",
        action="store_true",
        help="use the warehouse as it stands (no dbt seed/build)",
    )
    parser.add_argument(
        "--seeds-dir",
        type=Path,
        help="folder holding vgsales.csv for dbt (default: VGSALES_SEEDS_DIR, seeds/)",
    )
    parser.add_argument(
        "--snapshot-ttl",
        type=int,
        default=DEFAULT_TTL_SECONDS,
        help="seconds a Redis snapshot is kept after its last use (default: 7 days)",
    )
    parser.add_argument(
        "--report", type=Path, help="also write the run report as JSON to this file"
    )
    parser.add_argument(
        "--html-report",
        type=Path,
        metavar="DIR",
        help="also build the analytics report into DIR/index.html and log it to "
        "MLflow (experiment vgsales-reports); make pipeline uses reports/",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_settings()
    if args.seeds_dir is not None:
        seeds_dir = args.seeds_dir.resolve()
        if not (seeds_dir / "vgsales.csv").is_file():
            sys.exit(f"--seeds-dir {seeds_dir}: expected a vgsales.csv in it, found none")
        settings = dataclasses.replace(settings, vgsales_seeds_dir=str(seeds_dir))
    # Prefect reads its settings (PREFECT_HOME, analytics) from the environment
    # once, when imported: export ours first, then import the flow.
    export_to_environ(settings)
    from flows.pipeline.flow import vgsales_pipeline

    # At a terminal, a task that completed says so by its next line; failures still show.
    logging.getLogger("prefect.task_runs").addFilter(
        lambda record: not record.getMessage().startswith("Finished in state Completed"))

    try:
        report = vgsales_pipeline(
            skip_dbt=args.skip_dbt,
            snapshot_ttl=args.snapshot_ttl,
            html_report_dir=str(args.html_report.resolve()) if args.html_report else None,
        )
    except Exception as error:  # noqa: BLE001 - Prefect has logged the traceback
        print(f"pipeline failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    # The whole summary is the Prefect artifact and a file; the terminal gets
    # the outcome and where the rest is.
    summary = settings.run_dir / "pipeline_summary.md"
    summary.write_text(report.to_markdown())
    print(report.outcome_markdown())
    print(f"Full summary (loads, data quality, row counts, metrics): {summary}")
    if args.html_report:
        print(f"Report: {args.html_report.resolve() / 'index.html'}")
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(report.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
