"""What each load of the raw file changed, and how old the last load is.

Read from the marts dbt builds on every `dbt build` (`fct_sales_history`,
`mon_sales_revisions`, docs block load_history) and from dbt's own source
freshness results, so the pipeline summary, the Prefect artifact and the
analytics report state the same figures an analyst can query.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from ml.settings import Settings
from ml.warehouse import engine as warehouse

CHANGE_KINDS = ("added", "revised", "removed")
LARGEST_REVISIONS = 5

LOADS_SQL = """
select load_id, loaded_at, load_file_sha256, count(*) as releases
from fct_sales_history
group by load_id, loaded_at, load_file_sha256
order by loaded_at
"""

CHANGES_SQL = """
select load_number, change_kind, count(*) as releases
from mon_sales_revisions
group by load_number, change_kind
"""

LARGEST_SQL = f"""
select game_name, platform_code, release_year, previous_global_sales, global_sales,
    global_sales_change
from mon_sales_revisions
where change_kind = 'revised' and load_number = :load_number
order by abs(global_sales_change) desc, release_id
limit {LARGEST_REVISIONS}
"""


@dataclass(frozen=True)
class Freshness:
    """dbt's source freshness of the load audit (`dbt source freshness`)."""

    status: str  # pass, warn, error, runtime error
    max_loaded_at: str | None
    age_hours: float | None
    warn_after: str

    def describe(self) -> str:
        if self.max_loaded_at is None:
            return f"**{self.status}**: no load recorded (warns after {self.warn_after})."
        days = (self.age_hours or 0) / 24
        return (
            f"{self.status}: the raw file was last loaded at {self.max_loaded_at} "
            f"({days:.1f} days ago; warns after {self.warn_after})."
        )


@dataclass(frozen=True)
class LoadHistory:
    """Every recorded load with what it changed, and the latest load's largest revisions."""

    loads: pd.DataFrame  # load_number, loaded_at, file_sha256, releases, added, revised, removed
    largest_revisions: pd.DataFrame

    @property
    def latest(self) -> pd.Series | None:
        return None if self.loads.empty else self.loads.iloc[-1]

    def describe_latest(self) -> str:
        """One sentence on the latest load: what it added, revised and removed."""
        latest = self.latest
        if latest is None:
            return "No load of the raw file is recorded in fct_sales_history."
        what = ", ".join(f"{int(latest[kind]):,} {kind}" for kind in CHANGE_KINDS)
        previous = "the first load recorded" if latest.load_number == 1 else (
            f"against load {latest.load_number - 1}")
        return (
            f"Load {latest.load_number} (file `{latest.file_sha256[:12]}`, loaded "
            f"{latest.loaded_at}), {previous}: {what} releases."
        )

    def to_markdown(self) -> str:
        """The latest load, the loads table and the largest revisions, as markdown."""
        if self.loads.empty:
            return self.describe_latest()
        lines = ["| load | loaded at | file | releases | added | revised | removed |",
                  "|---:|---|---|---:|---:|---:|---:|"]
        for load in self.loads.itertuples():
            lines.append(
                f"| {load.load_number} | {load.loaded_at} | `{load.file_sha256[:12]}` "
                f"| {load.releases:,} | {load.added:,} | {load.revised:,} | {load.removed:,} |"
            )
        if not self.largest_revisions.empty:
            lines += ["", f"Largest revisions of load {self.latest.load_number} "
                          "(global sales, millions):", "",
                      "| title | platform | year | before | after | change |",
                      "|---|---|---:|---:|---:|---:|"]
            for row in self.largest_revisions.itertuples():
                year = "" if pd.isna(row.release_year) else int(row.release_year)
                lines.append(
                    f"| {row.game_name} | {row.platform_code} | {year} "
                    f"| {row.previous_global_sales:.2f} | {row.global_sales:.2f} "
                    f"| {row.global_sales_change:+.2f} |"
                )
        return "\n".join(lines)


def read_load_history(settings: Settings) -> LoadHistory:
    """The loads of `settings.mariadb_database`, numbered as mon_sales_revisions numbers them."""
    with warehouse.connect(settings) as connection:
        loads = pd.read_sql(sa.text(LOADS_SQL), connection)
        changes = pd.read_sql(sa.text(CHANGES_SQL), connection)
        loads["load_number"] = range(1, len(loads) + 1)
        latest = int(loads.load_number.max()) if len(loads) else 0
        largest = pd.read_sql(sa.text(LARGEST_SQL), connection, params={"load_number": latest})
    counts = changes.pivot_table(index="load_number", columns="change_kind", values="releases",
                                 aggfunc="sum", fill_value=0)
    counts = counts.reindex(columns=list(CHANGE_KINDS), fill_value=0)
    loads = loads.join(counts, on="load_number").fillna({k: 0 for k in CHANGE_KINDS})
    loads = loads.rename(columns={"load_file_sha256": "file_sha256"}).astype(
        {"releases": "int64", **{kind: "int64" for kind in CHANGE_KINDS}})
    loads["file_sha256"] = loads.file_sha256.fillna("unknown")
    for column in ("previous_global_sales", "global_sales", "global_sales_change"):
        largest[column] = largest[column].astype("float64")
    columns = ["load_number", "loaded_at", "file_sha256", "releases", *CHANGE_KINDS]
    return LoadHistory(loads=loads[columns], largest_revisions=largest)


def read_freshness(target: Path, source: str = "source.vgsales.seed_loads.seed_load_audit"
                   ) -> Freshness:
    """The freshness of `source` from `target/sources.json` (`dbt source freshness`)."""
    path = target / "sources.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: `dbt source freshness` wrote no results")
    results = {r["unique_id"]: r for r in json.loads(path.read_text())["results"]}
    if source not in results:
        raise KeyError(f"{path} has no freshness result for {source}")
    result = results[source]
    criteria = result.get("criteria", {}).get("warn_after") or {}
    warn_after = (f"{criteria['count']} {criteria['period']}s"
                  if criteria.get("count") else "never")
    age = result.get("max_loaded_at_time_ago_in_s")
    return Freshness(
        status=result["status"],
        max_loaded_at=result.get("max_loaded_at"),
        age_hours=None if age is None else age / 3600,
        warn_after=warn_after,
    )
