"""The drift report a person reads: decision, PSI table, charts per feature.

Two renderings of one `DriftCheck` (plus what the flow did about it):
markdown for the Prefect artifact, and a single offline HTML page under
`reports/drift/` with, for every champion feature, the reference and current
share of each bin side by side (one panel per drift source). Figures and
page come from what the analytics report uses (`ml.reporting.charts`,
`ml.reporting.page`), so both reports look alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ml.markdown import frame_table
from ml.monitoring.drift import RETRAIN, WARN, DriftCheck
from ml.reporting import charts, page
from ml.reporting.page import Section

SOURCES = ("predictions", "batch")
SOURCE_TITLES = {
    "predictions": "prediction log",
    "batch": "loaded data (train split)",
}
STATUS_ORDER = {"error": 0, "warn": 1, "ok": 2, "too_few_rows": 3}
# Bars per panel before the rest of a categorical feature's bins are pooled
# in the chart (the PSI still uses every bin).
MAX_BARS = 24
PSI_COLUMNS = [
    "model_name", "model_version", "drift_source", "feature", "psi",
    "unseen_rate", "current_rows", "reference_rows", "drift_status",
]  # fmt: skip
PERFORMANCE_COLUMNS = [
    "model_name", "model_version", "period_label", "matched_predictions",
    "matched_pairs", "mae", "rmse", "r2",
]  # fmt: skip


@dataclass(frozen=True)
class Action:
    """What the flow did about the check: `decision` and what followed."""

    decision: str  # retrain | warn | none
    reason: str  # the check's reason
    outcome: str  # e.g. "retrain run X: prerelease version 3 promoted"


def psi_table(check: DriftCheck) -> pd.DataFrame:
    """The PSI table, worst status first, then largest PSI."""
    table = check.drift[PSI_COLUMNS].copy()
    table["order"] = table.drift_status.map(STATUS_ORDER)
    table = table.sort_values(["order", "psi"], ascending=[True, False], na_position="last")
    return table.drop(columns="order").reset_index(drop=True)


def performance_table(check: DriftCheck) -> pd.DataFrame:
    if check.performance.empty:
        return pd.DataFrame(columns=PERFORMANCE_COLUMNS)
    return check.performance[PERFORMANCE_COLUMNS].reset_index(drop=True)


def decision_line(check: DriftCheck, action: Action) -> str:
    """The headline: the decision, and whether the check could judge at all."""
    if action.decision == RETRAIN:
        headline = "**Retrain**: error-severity drift"
    elif action.decision == WARN:
        headline = "**Warning**: drift above the warning threshold"
    elif not check.judged_anything:
        headline = (
            "**Not judged**: too few observations or mostly unseen categories; "
            "no drift decision could be made"
        )
    elif check.unjudged():
        headline = "No action: no drift above the thresholds where it could be judged"
    else:
        headline = "No action: no drift above the thresholds"
    unjudged = check.unjudged()
    if unjudged and check.judged_anything:
        headline += f" (not judged: {len(unjudged)}, listed below)"
    return f"Decision: {headline}."


def to_markdown(check: DriftCheck, action: Action) -> str:
    """The Prefect artifact: decision, why, what followed, tables."""
    lines = ["# vgsales drift check", "", decision_line(check, action), "", action.reason, ""]
    if action.outcome:
        lines += [action.outcome, ""]
    for note in check.notes:
        lines += [f"- {note}"]
    lines += ["", "## Population stability index", ""]
    lines += [
        "Status by the dbt vars `drift_psi_warn` / `drift_psi_error`; "
        "`too_few_rows` = under `drift_min_rows` observations (not judged).",
        "",
        frame_table(psi_table(check)),
        "",
        "## Drift tests",
        "",
        frame_table(
            pd.DataFrame(
                [(t.name, t.severity, t.status, t.failures) for t in check.tests],
                columns=["test", "severity", "status", "failing rows"],
            )
        ),
        "",
        "## Predictions against actual sales",
        "",
    ]
    performance = performance_table(check)
    if performance.empty:
        lines += ["No logged prediction matches a loaded release yet.", ""]
    else:
        lines += [frame_table(performance), ""]
    return "\n".join(lines)


def _shares(bins: pd.DataFrame) -> pd.DataFrame:
    """Bins in display order; a long category tail pooled into one bar."""
    ordered = bins.sort_values(["bin_order", "bin_label"]).reset_index(drop=True)
    if len(ordered) <= MAX_BARS:
        return ordered
    head, tail = ordered.iloc[: MAX_BARS - 1], ordered.iloc[MAX_BARS - 1 :]
    pooled = pd.DataFrame(
        [
            {
                "bin_label": f"{len(tail)} more bins",
                "reference_share": tail.reference_share.sum(),
                "current_share": tail.current_share.sum(min_count=1),
            }
        ]
    )
    return pd.concat([head, pooled], ignore_index=True)


def feature_figure(check: DriftCheck, model_name: str, feature: str):
    """Reference vs current bin shares of one feature, a panel per source."""
    rows = check.bins[(check.bins.model_name == model_name) & (check.bins.feature == feature)]
    drift = check.drift[(check.drift.model_name == model_name) & (check.drift.feature == feature)]
    panels = [s for s in SOURCES if (rows.drift_source == s).any()]
    widest = max((len(_shares(rows[rows.drift_source == s])) for s in panels), default=1)
    figure = charts.new_figure(max(6.0, 0.45 * widest) * len(panels) / 1.4, 3.6)
    for index, source in enumerate(panels, start=1):
        shares = _shares(rows[rows.drift_source == source])
        axes = figure.add_subplot(1, len(panels), index)
        positions = np.arange(len(shares))
        axes.bar(positions - 0.2, shares.reference_share, 0.4, label="training reference",
                 color=charts.BAR_COLOR)
        axes.bar(positions + 0.2, shares.current_share.fillna(0), 0.4, label="current",
                 color=charts.ACCENT_COLOR)
        axes.set_xticks(positions, shares.bin_label, rotation=60, ha="right", fontsize=7)
        axes.set_ylabel("share of rows")
        summary = drift[drift.drift_source == source]
        if len(summary):
            row = summary.iloc[0]
            psi = "n/a" if pd.isna(row.psi) else f"{row.psi:.3f}"
            axes.set_title(
                f"{SOURCE_TITLES[source]}: PSI {psi}, {int(row.current_rows):,} rows "
                f"({row.drift_status})",
                fontsize=9,
            )
        if index == 1:
            axes.legend(fontsize=7)
    figure.suptitle(f"{model_name}: {feature}")
    return figure


def to_html(check: DriftCheck, action: Action, checked_at: datetime) -> str:
    """The whole page: decision, PSI table, a chart per feature, performance."""
    decision = Section("decision", "Decision")
    decision.text(f"{decision_line(check, action).replace('**', '')} {action.reason}")
    if action.outcome:
        decision.text(action.outcome)
    for note in check.notes:
        decision.text(note)
    table = Section("psi", "Population stability index")
    table.table(psi_table(check), "PSI per source, champion and feature", digits=3)
    sections = [decision, table]
    for model_name in sorted(check.bins.model_name.unique()):
        section = Section(f"features-{model_name}", f"Features of {model_name}")
        for feature in sorted(check.bins[check.bins.model_name == model_name].feature.unique()):
            section.chart(
                f"{model_name}.{feature}",
                feature_figure(check, model_name, feature),
                f"{feature}: share of each bin in training (blue) and now (orange)",
            )
        sections.append(section)
    performance = Section("performance", "Predictions against actual sales")
    frame = performance_table(check)
    if frame.empty:
        performance.text("No logged prediction matches a loaded release yet.")
    else:
        performance.table(frame, "Per model version and release year", digits=3)
    sections.append(performance)
    stamp = checked_at.strftime("%Y-%m-%d %H:%M UTC")
    return page.render("vgsales drift check", stamp, sections, toc=False)


def write(check: DriftCheck, action: Action, out_dir: Path) -> Path:
    """Write `drift_<UTC time>.html` and `.md` into `out_dir`; the HTML's path."""
    checked_at = datetime.now(timezone.utc)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"drift_{checked_at.strftime('%Y%m%dT%H%M%SZ')}"
    page = stem.with_suffix(".html")
    page.write_text(to_html(check, action, checked_at))
    stem.with_suffix(".md").write_text(to_markdown(check, action))
    return page
