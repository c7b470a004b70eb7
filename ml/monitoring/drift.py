"""Run the warehouse's drift checks and decide what they call for.

The measuring is done by dbt (`dbt build --selector monitoring`, docs block
drift_checks): PSI and unseen rates per drift source, champion and feature
in `mon_feature_drift`, bin shares in `mon_feature_bins`, errors against
actual sales in `mon_prediction_performance`, and tests tagged `drift` that
compare PSI with the vars `drift_psi_warn` (severity warn) and
`drift_psi_error` (severity error).

This module reads those tables and the build's test results into a
`DriftCheck`. The decision is the tests' verdict, not a second reading of the
thresholds: a failed error-severity drift test means retrain, a warning means
tell someone. Any other failure of the monitoring build (a SQL error, a
broken monitoring table) is raised: a check that could not run must not look
like "no drift".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from ml.settings import Settings
from ml.warehouse import engine as warehouse
from ml.warehouse.dbt_runner import DbtResult, progress_log, run_dbt
from ml.warehouse.identifiers import quoted

SELECTOR = "monitoring"
DRIFT_TAG = "drift"
RETRAIN = "retrain"
WARN = "warn"
NONE = "none"
# A category feature whose current values are mostly categories training never
# saw: its PSI compares little of what is served, so it judges nothing.
MOSTLY_UNSEEN = 0.5
# Counts MariaDB returns as DECIMAL (sums), read back as integers.
COUNT_COLUMNS = {
    "drift": ("model_version", "reference_rows", "current_rows", "unseen_rows"),
    "bins": ("model_version", "reference_rows", "current_rows", "unseen_rows"),
    "performance": ("model_version", "matched_pairs", "matched_predictions"),
}


class DriftCheckError(RuntimeError):
    """The monitoring build failed in a way that says nothing about drift."""


@dataclass(frozen=True)
class DriftTest:
    """One dbt test tagged `drift` and its outcome."""

    name: str
    severity: str  # warn | error
    status: str  # pass | warn | fail
    failures: int

    @property
    def failed(self) -> bool:
        return self.status in ("warn", "fail")


@dataclass
class DriftCheck:
    """The drift tables after one monitoring build, and the tests' verdict."""

    tests: list[DriftTest]
    drift: pd.DataFrame  # mon_feature_drift
    bins: pd.DataFrame  # mon_feature_bins
    performance: pd.DataFrame  # mon_prediction_performance
    notes: list[str] = field(default_factory=list)  # e.g. champions without reference

    @property
    def decision(self) -> str:
        """`retrain` (an error-severity drift test failed), `warn` or `none`."""
        if any(t.failed and t.severity == "error" for t in self.tests):
            return RETRAIN
        if any(t.failed for t in self.tests):
            return WARN
        return NONE

    def flagged(self, status: str) -> pd.DataFrame:
        """Rows of `mon_feature_drift` with `drift_status == status`, worst first."""
        rows = self.drift[self.drift.drift_status == status]
        return rows.sort_values("psi", ascending=False).reset_index(drop=True)

    def unjudged(self) -> list[str]:
        """What the check could not judge, and why: a drift source under
        `drift_min_rows` observations, a category feature mostly unseen."""
        notes = []
        few = self.drift[~self.drift.is_evaluated.astype(bool)]
        for source, rows in few.groupby("drift_source", sort=True):
            notes.append(
                f"{source} ({int(rows.current_rows.max()):,} rows, under drift_min_rows)"
            )
        unseen = self.drift[self.drift.unseen_rate.fillna(0) >= MOSTLY_UNSEEN]
        for row in unseen.itertuples():
            notes.append(f"{_where(row)} ({row.unseen_rate:.0%} unseen categories)")
        return notes

    @property
    def judged_anything(self) -> bool:
        """Whether any feature had enough rows and mostly known categories."""
        judged = self.drift.is_evaluated.astype(bool) & (
            self.drift.unseen_rate.fillna(0) < MOSTLY_UNSEEN
        )
        return bool(judged.any())

    def reason(self) -> str:
        """Why the decision was taken, and what could not be judged."""
        unjudged = self.unjudged()
        not_judged = f" Not judged: {'; '.join(unjudged)}." if unjudged else ""
        if self.decision == NONE:
            if not self.judged_anything:
                return (
                    "Could not judge drift: no champion feature had enough "
                    "observations (var drift_min_rows) and mostly known categories."
                    + not_judged
                )
            evaluated = self.drift[self.drift.is_evaluated.astype(bool)]
            worst = evaluated.sort_values("psi", ascending=False).iloc[0]
            where = "judged feature" if unjudged else "evaluated feature"
            return (
                f"No drift: every {where} is under the warning threshold "
                f"(largest PSI {worst.psi:.3f}: {_where(worst)})." + not_judged
            )
        status = "error" if self.decision == RETRAIN else "warn"
        rows = self.flagged(status)
        listed = "; ".join(
            f"{_where(row)} PSI {row.psi:.3f}"
            + (
                f", unseen {row.unseen_rate:.0%}"
                if pd.notna(row.unseen_rate) and row.unseen_rate > 0
                else ""
            )
            for row in rows.itertuples()
        )
        failed = ", ".join(t.name for t in self.tests if t.failed)
        if self.decision == RETRAIN:
            threshold = rows.psi_error_threshold.iloc[0] if len(rows) else float("nan")
            return (
                f"Error-severity drift: {listed} (PSI >= {threshold:g}; failed tests: "
                f"{failed})." + not_judged
            )
        return (
            f"Drift warning: {listed or 'see the unseen rates'} (failed tests: {failed})."
            + not_judged
        )

    def headline(self) -> str:
        """The flagged features in a few words, e.g. for a flow-run name."""
        status = "error" if self.decision == RETRAIN else "warn"
        return "; ".join(
            f"{row.model_name}.{row.feature} PSI {row.psi:.2f} ({row.drift_source})"
            for row in self.flagged(status).itertuples()
        )


def _where(row) -> str:
    return f"{row.model_name} v{row.model_version} `{row.feature}` on {row.drift_source}"


def drift_tests(result: DbtResult) -> list[DriftTest]:
    """The build's tests tagged `drift`, with their outcome.

    Raises DriftCheckError when any node errored or a monitoring test that is
    not a drift test failed (the drift tables cannot be trusted then).
    """
    manifest = json.loads((result.target_path / "manifest.json").read_text())
    nodes = manifest["nodes"]
    tests: list[DriftTest] = []
    broken: list[str] = []
    for entry in result.results:
        node = nodes.get(entry["unique_id"], {})
        name = node.get("name", entry["unique_id"])
        if entry["status"] in ("error", "skipped"):
            broken.append(f"{name}: {entry['status']} ({(entry.get('message') or '').strip()})")
        elif node.get("resource_type") == "test" and DRIFT_TAG in node.get("tags", []):
            tests.append(
                DriftTest(
                    name=name,
                    severity=str(node["config"]["severity"]).lower(),
                    status=entry["status"],
                    failures=int(entry.get("failures") or 0),
                )
            )
        elif entry["status"] == "fail":
            broken.append(f"{name}: failed ({entry.get('failures')} rows)")
    if broken:
        raise DriftCheckError(
            "the monitoring build did not complete, so drift was not measured: "
            + "; ".join(broken)
            + f" (see {result.target_path / 'run_results.json'})"
        )
    if result.run_results is None:
        raise DriftCheckError(
            f"dbt exited with {result.returncode} before writing run results: "
            "see its output above"
        )
    if not tests:
        raise DriftCheckError(
            f"the monitoring build ran no test tagged {DRIFT_TAG!r}: "
            f"check the selector {SELECTOR!r} in dbt_project/selectors.yml"
        )
    return tests


def read_tables(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """`mon_feature_drift`, `mon_feature_bins`, `mon_prediction_performance`."""
    database = quoted(settings.mariadb_database)
    with warehouse.connect(settings) as connection:
        drift = pd.read_sql(
            sa.text(
                f"select * from {database}.mon_feature_drift "
                "order by model_name, drift_source, feature"
            ),
            connection,
        )
        bins = pd.read_sql(
            sa.text(
                f"select * from {database}.mon_feature_bins "
                "order by model_name, drift_source, feature, bin_order, bin_label"
            ),
            connection,
        )
        performance = pd.read_sql(
            sa.text(
                f"select * from {database}.mon_prediction_performance "
                "order by model_name, model_version, release_year"
            ),
            connection,
        )
    drift["is_evaluated"] = drift["is_evaluated"].astype(bool)
    for frame, columns in (
        (drift, COUNT_COLUMNS["drift"]),
        (bins, COUNT_COLUMNS["bins"]),
        (performance, COUNT_COLUMNS["performance"]),
    ):
        for column in columns:
            frame[column] = pd.to_numeric(frame[column]).astype("Int64")
    return drift, bins, performance


def target_path(settings: Settings) -> Path:
    """dbt artifacts of the monitoring build, one folder per database."""
    return settings.run_dir / "dbt" / f"{settings.mariadb_database}-monitoring"


def run_checks(
    settings: Settings,
    *,
    window_days: int | None = None,
    notes: list[str] | None = None,
    log: Callable[[str], object] = print,
) -> DriftCheck:
    """Build the monitoring models and tests, and read the outcome."""
    args = ["build", "--selector", SELECTOR, "--no-use-colors"]
    if window_days is not None:
        args += ["--vars", json.dumps({"drift_window_days": int(window_days)})]
    target = target_path(settings)
    with progress_log(target / "dbt_output.log", log) as progress:
        result = run_dbt(args, settings, log=progress, target_path=target)
    tests = drift_tests(result)
    drift, bins, performance = read_tables(settings)
    return DriftCheck(
        tests=tests, drift=drift, bins=bins, performance=performance, notes=list(notes or [])
    )
