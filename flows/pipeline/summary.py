"""What a pipeline run did, for people (markdown) and programs (rows, JSON).

Plain dataclasses filled in by the flow; rendering them needs no Prefect, so
the summary can be checked without running a flow.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class SnapshotOutcome:
    """Where training read the mart from."""

    fingerprint: str
    rows: int
    key: str | None = None
    reused: bool = False
    degraded: str | None = None  # why Redis was skipped; None when it was used

    def describe(self) -> str:
        if self.degraded:
            return (
                f"**Degraded**: {self.degraded}. Training read the mart straight "
                "from MariaDB; no snapshot was written."
            )
        how = "reused (mart unchanged since it was taken)" if self.reused else "published"
        return f"Redis snapshot `{self.key}`, {how}."


@dataclass(frozen=True)
class LoadReport:
    """What the loads of the raw file changed, and how long ago it was loaded."""

    latest: str  # ml.warehouse.loads.LoadHistory.describe_latest
    markdown: str  # ml.warehouse.loads.LoadHistory.to_markdown
    freshness: str  # ml.warehouse.loads.Freshness.describe


@dataclass(frozen=True)
class ModelOutcome:
    """One model's evaluation and what the registry did with it."""

    model_name: str
    version: int
    alias: str | None  # the alias the version holds now
    promoted: bool  # became champion in this run
    reused: bool  # same model and data as a version already judged
    reason: str
    run_id: str
    metrics: dict[str, float]
    evaluation_markdown: str


@dataclass
class PipelineReport:
    """Everything the run's summary artifact says."""

    flow_run_id: str
    snapshot: SnapshotOutcome
    row_counts: dict[str, int]
    models: list[ModelOutcome] = field(default_factory=list)
    data_quality_markdown: str | None = None  # None when dbt was skipped
    dbt_warnings: list[str] = field(default_factory=list)
    reload: str = ""
    goals_markdown: str | None = None  # the forecast's goals beside baselines
    loads: LoadReport | None = None  # None when dbt was skipped

    @property
    def degraded(self) -> bool:
        return self.snapshot.degraded is not None

    def to_markdown(self) -> str:
        """The summary artifact: the outcome first, then the details
        (what the loads changed, data quality, row counts, each model's
        metrics against its baselines)."""
        return self.outcome_markdown() + self.details_markdown()

    def outcome_markdown(self) -> str:
        """What a person at the terminal needs: status, data source, load,
        dbt warnings, registry decisions, API, the forecast's goals."""
        status = "completed, **degraded**" if self.degraded else "completed"
        lines = ["# vgsales pipeline run", "", f"Status: {status}.", ""]
        lines += [f"Data: {self.snapshot.describe()}", ""]
        if self.loads is not None:
            lines += [f"Load: {self.loads.latest} Freshness: {self.loads.freshness}", ""]
        if self.dbt_warnings:
            lines += [f"dbt warnings ({len(self.dbt_warnings)}):", ""]
            lines += [f"- {warning}" for warning in self.dbt_warnings] + [""]
        lines += ["| model | version | alias | registry |", "|---|---|---|---|"]
        for model in self.models:
            promoted = "promoted in this run: " if model.promoted else ""
            lines.append(
                f"| `{model.model_name}` | {model.version} | {model.alias or '-'} "
                f"| {promoted}{model.reason} |"
            )
        lines += ["", f"API: {self.reload}", ""]
        if self.goals_markdown:
            lines += ["## Forecast goals", "", self.goals_markdown, ""]
        return "\n".join(lines) + "\n"

    def details_markdown(self) -> str:
        lines = ["## Loads", ""]
        if self.loads is None:
            lines += ["dbt was skipped (`--skip-dbt`): no load was made.", ""]
        else:
            lines += [self.loads.markdown, ""]
        lines += ["## Data quality", ""]
        if self.data_quality_markdown is None:
            lines += ["dbt was skipped (`--skip-dbt`): the mart was used as it stood.", ""]
        else:
            lines += [_nested(self.data_quality_markdown, "Data validation summary"), ""]
        lines += ["## Row counts", "", "| relation | rows |", "|---|---:|"]
        lines += [f"| {name} | {count:,} |" for name, count in self.row_counts.items()]
        for model in self.models:
            lines += [
                "",
                f"## Model `{model.model_name}`",
                "",
                _nested(model.evaluation_markdown, model.model_name),
            ]
        return "\n".join(lines) + "\n"

    def metrics_rows(self) -> list[dict[str, object]]:
        """The metrics table artifact, one row per model and metric.

        Long rather than wide: the models report different metrics (each has
        its own splits and baselines), so a wide table would be mostly blanks.
        """
        return [
            {
                "model": m.model_name,
                "version": m.version,
                "alias": m.alias or "",
                "metric": name,
                "value": value,
            }
            for m in self.models
            for name, value in m.metrics.items()
        ]

    def to_json(self) -> str:
        """The report for programs (`--report`), markdown included."""
        data = asdict(self)
        data["degraded"] = self.degraded
        data["markdown"] = self.to_markdown()
        return json.dumps(data, indent=2, default=str)


def _nested(markdown: str, title: str) -> str:
    """Fit a model's own report under its section: drop its `# title` line and
    move its other headings one level down."""
    lines = markdown.strip().splitlines()
    if lines and lines[0].lstrip("#").strip() == title:
        lines = lines[1:]
    return "\n".join("#" + line if line.startswith("#") else line for line in lines).strip()
