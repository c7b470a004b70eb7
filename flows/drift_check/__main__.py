"""Run the drift check once: `python -m flows.drift_check` (what the daily
deployment runs).

Prints the check's markdown summary; exit status 0 when the check ran
(whatever it found), 1 when it could not. Prefect runs in ephemeral mode
unless PREFECT_API_URL names a server.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ml.settings import export_to_environ, load_settings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flows.drift_check", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--window-days", type=int, default=None,
        help="days of prediction log to compare with the training reference "
             "(default: the dbt var drift_window_days in dbt_project.yml)",
    )
    parser.add_argument(
        "--no-retrain", action="store_true",
        help="report error-severity drift without retraining",
    )
    parser.add_argument(
        "--reports-dir", type=Path,
        help="folder for the HTML/markdown report (default reports/drift/)",
    )
    parser.add_argument("--report", type=Path, help="also write the outcome as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Prefect reads its settings when imported: export ours first.
    export_to_environ(load_settings())
    from flows.drift_check.flow import drift_check

    try:
        outcome = drift_check(
            window_days=args.window_days,
            retrain=not args.no_retrain,
            reports_dir=str(args.reports_dir.resolve()) if args.reports_dir else None,
        )
    except Exception as error:  # noqa: BLE001 - Prefect has logged the traceback
        print(f"drift check failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"Decision: {outcome.decision}. {outcome.reason}\n{outcome.action}")
    print(f"Report: {outcome.report_path}")
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(outcome.to_dict(), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
