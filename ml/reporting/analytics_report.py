"""The analytics report: one static HTML page built from the marts.

`build_report(settings, out_dir)` reads the warehouse of `settings` (reader
user), the champions from the MLflow registry, and writes
`out_dir/index.html`: the original design's visuals, its three research
questions answered with numbers and a chart each, and the model section
(metrics against baselines, residuals, per-segment table, and the parts of
each champion's model card meant for its users: `ml.reporting.model_card`). Images are
embedded as base64 PNG, so the file reads offline and travels as one MLflow
or Prefect artifact.

CLI: `python -m ml.reporting.analytics_report [--out reports]` (what `make report` runs).
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ml import features
from ml.modeling import evaluate
from ml.modeling.plots import importance_figure
from ml.reporting import charts, model_card, page, tables
from ml.reporting.data import MartData, read_marts
from ml.reporting.datasheet import read_warehouse_facts
from ml.reporting.document import Bullets, Document, Table
from ml.reporting.page import Section
from ml.reporting.model_findings import (
    MissingChampion,
    ModelFindings,
    champion_findings,
)
from ml.settings import Settings, load_settings
from ml.warehouse.loads import LoadHistory, read_load_history
from ml.warehouse.mart import read_ml_mart

REPORT_FILE = "index.html"
TOP_PUBLISHERS = 15
TOP_TREND_PLATFORMS = 8
TOP_IMPORTANCE_LINES = 3


def overview_section(data: MartData, database: str) -> Section:
    releases = data.releases
    known_years = releases["year"].dropna()
    section = Section("overview", "Overview")
    section.text(
        f"{len(releases):,} accepted releases from the marts of database {database} "
        f"({releases['global_sales'].sum():,.1f} million units sold worldwide), "
        f"years {int(known_years.min())}–{int(known_years.max())}; "
        f"{releases['year'].isna().sum():,} releases have no known year and appear "
        "only in charts that do not need one. "
        f"{int(data.rejected['raw_rows'].sum()):,} raw rows were quarantined "
        "(rejected_vgsales)."
    )
    if not data.rejected.empty:
        section.table(data.rejected, "Quarantined raw rows by reason")
    return section


def categories_section(releases: pd.DataFrame) -> Section:
    section = Section("categories", "Releases and sales by platform, genre and publisher")
    section.chart("bars_platform", charts.releases_and_sales_bars(releases, "platform"),
                  "Releases and global sales by platform")
    section.chart("bars_genre", charts.releases_and_sales_bars(releases, "genre"),
                  "Releases and global sales by genre")
    section.chart(
        "bars_publisher",
        charts.releases_and_sales_bars(releases, "publisher", top=TOP_PUBLISHERS),
        f"Releases and global sales of the top {TOP_PUBLISHERS} publishers by sales",
    )
    return section


def distributions_section(releases: pd.DataFrame) -> Section:
    section = Section("distributions", "Distributions of sales")
    sales = releases["global_sales"]
    share_top = sales.nlargest(max(1, len(sales) // 100)).sum() / sales.sum() * 100
    section.text(
        f"Sales are heavily right-skewed: median {sales.median():.2f} million, mean "
        f"{sales.mean():.2f}, maximum {sales.max():.2f}; the top 1% of releases sold "
        f"{share_top:.0f}% of all units. Sales axes below are logarithmic."
    )
    section.chart("hist_global", charts.global_sales_histogram(releases),
                  "Global sales per release (log axis)")
    section.chart("hist_regional", charts.regional_sales_histograms(releases),
                  "Regional sales per release (log axes)")
    section.chart("box_genre", charts.sales_box_plot(releases, "genre"),
                  "Global sales per release by genre, ordered by median (log axis)")
    section.chart("box_platform", charts.sales_box_plot(releases, "platform"),
                  "Global sales per release by platform, ordered by median (log axis)")
    correlation = releases[[*charts.REGIONS, "global_sales"]].corr()
    correlation.index = correlation.columns = [
        charts.REGION_LABELS[c] for c in correlation.columns
    ]
    section.chart("heatmap_correlation",
                  charts.heatmap(correlation, "Pearson correlation", cmap="coolwarm"),
                  "Correlation of regional and global sales per release")
    return section


def time_section(releases: pd.DataFrame) -> Section:
    section = Section("time", "Releases and sales over time")
    section.chart("lines_year", charts.releases_and_sales_over(releases, "year"),
                  "Releases and global sales by year")
    section.chart("lines_decade", charts.releases_and_sales_over(releases, "decade"),
                  "Releases and global sales by decade")
    return section


def rq1_section(releases: pd.DataFrame) -> Section:
    section = Section("rq1", "RQ1: How do regional sales vary by genre and platform across decades?")
    shares = tables.region_share_by_decade(releases)
    leaders = tables.leaders_by_region_decade(releases)
    first, last = shares.iloc[0], shares.iloc[-1]
    japan = leaders[leaders.region == "Japan"]
    north_america = leaders[leaders.region == "North America"]
    section.text(
        f"North America's share of sales went from {first['North America %']:.0f}% in the "
        f"{first.decade} to {last['North America %']:.0f}% in the {last.decade}, "
        f"Europe's from {first['Europe %']:.0f}% to {last['Europe %']:.0f}%, Japan's from "
        f"{first['Japan %']:.0f}% to {last['Japan %']:.0f}%. Genre tastes differ by region: "
        "the top genre in Japan was "
        + ", ".join(f"{r['top genre']} in the {r.decade} ({r['genre share %']:.0f}%)"
                    for _, r in japan.iterrows())
        + "; in North America "
        + ", ".join(f"{r['top genre']} in the {r.decade} ({r['genre share %']:.0f}%)"
                    for _, r in north_america.iterrows())
        + f". Decades with fewer than {tables.MIN_RELEASES} releases are left out."
    )
    section.table(shares, "Share of each decade's sales by region (%)", digits=1)
    section.table(leaders, "Top genre and platform per region and decade (share of that region's sales)",
                  digits=1)
    section.chart(
        "rq1_genre_region_decade",
        charts.heatmap(tables.share_within_region_decade(releases, "genre"),
                       "% of the region's sales that decade", fmt="{:.0f}"),
        "Genre share (%) of each region's sales, by decade",
    )
    section.chart(
        "rq1_manufacturer_region_decade",
        charts.heatmap(tables.share_within_region_decade(releases, "manufacturer"),
                       "% of the region's sales that decade", fmt="{:.0f}"),
        "Platform maker share (%) of each region's sales, by decade",
    )
    return section


def rq2_section(findings: list[ModelFindings | MissingChampion]) -> Section:
    section = Section("rq2", "RQ2: Which features matter most for the forecast?")
    section.text(
        "Permutation importance: how much the champion's R² on the held-out test "
        "split drops when one input column is shuffled (mean ± std over repeats). "
        "Unlike impurity importance, it is measured on unseen releases and does not "
        "favour inputs with many categories; impurity importance is shown beside it "
        "when the model has one."
    )
    for finding in findings:
        if isinstance(finding, MissingChampion):
            missing_champion(section, finding)
            continue
        top = finding.importance.head(TOP_IMPORTANCE_LINES)
        section.text(
            f"{finding.model_name} (version {finding.version or '?'}): the most important "
            "inputs are "
            + ", ".join(f"{r.feature} (R² drop {r.permutation_r2_drop:.3f} ± "
                        f"{r.permutation_std:.3f})" for r in top.itertuples())
            + "."
        )
        section.chart(
            f"rq2_importance_{finding.model_name}",
            importance_figure(finding.importance, f"{finding.model_name}: feature importance"),
            f"Permutation importance of the {finding.model_name} champion on its test split",
        )
        section.table(finding.importance, f"{finding.model_name}: importance per input", digits=4)
    return section


def rq3_section(releases: pd.DataFrame) -> Section:
    section = Section("rq3", "RQ3: Temporal trends of platforms and genres")
    lifecycles = tables.platform_lifecycles(releases)
    misdated = tables.dated_before_launch(releases)
    genres = tables.genre_share_by_decade(releases)
    decades = [c for c in genres.columns if c.endswith("s %")]
    rising, falling = genres.iloc[0], genres.iloc[-1]
    section.text(
        f"Platforms come and go: the {len(lifecycles)} platforms with most releases were "
        f"active a median of {lifecycles['years active'].median():.0f} years and peaked "
        f"a median of {(lifecycles['peak year'] - lifecycles['first year']).median():.0f} "
        f"years after their first release. Between the {decades[0][:-2]} and the "
        f"{decades[-1][:-2]}, {rising.genre} gained the most share of releases "
        f"({rising[decades[0]]:.1f}% → {rising[decades[-1]]:.1f}%) and {falling.genre} "
        f"lost the most ({falling[decades[0]]:.1f}% → {falling[decades[-1]]:.1f}%)."
    )
    section.chart(
        "rq3_platform_years",
        charts.trend_lines(tables.yearly_releases(releases, "platform", TOP_TREND_PLATFORMS),
                           "releases", "year"),
        f"Releases per year of the {TOP_TREND_PLATFORMS} platforms with most releases",
    )
    section.chart(
        "rq3_genre_years",
        charts.small_multiples(tables.yearly_share(releases, "genre"), "% of the year's releases",
                               "year"),
        f"Genre share of each year's releases (years with {tables.MIN_RELEASES}+ releases)",
    )
    if len(misdated):
        per_platform = ", ".join(
            f"{platform} {count}" for platform, count
            in misdated.platform.value_counts().sort_index().items()
        )
        section.text(
            f"The lifecycles leave out {len(misdated):,} "
            f"release{'s' if len(misdated) != 1 else ''} dated before their "
            f"platform's launch ({per_platform}), which the warehouse flags (dbt test "
            "accepted_year_not_before_platform_launch warns about them)."
        )
    section.table(lifecycles, "Platform lifecycles (platforms with most releases)", digits=1)
    section.table(genres, "Genre share of each decade's releases (%)", digits=1)
    return section


def loads_section(history: LoadHistory) -> Section:
    """What each load of the raw file added, revised and removed (`mon_sales_revisions`)."""
    section = Section("loads", "Loads of the raw file")
    section.text(
        history.describe_latest() + " Each load of a file whose content differs from the last "
        "one is kept in fct_sales_history; mon_sales_revisions lists every release a load "
        "added, revised (sales, publisher or genre) or no longer has."
    )
    if not history.loads.empty:
        section.table(history.loads, "Loads: releases accepted and what changed against the load before")
    if not history.largest_revisions.empty:
        section.table(history.largest_revisions,
                      f"Largest revisions of load {history.latest.load_number} (global sales, millions)")
    return section


def model_section(
    findings: list[ModelFindings | MissingChampion], cards: dict[str, Document] | None = None
) -> Section:
    section = Section("model", "Model: metrics, residuals and segments")
    for finding in findings:
        section.heading(finding.model_name)
        if isinstance(finding, MissingChampion):
            missing_champion(section, finding)
            continue
        section.text(
            f"Champion version {finding.version or '?'} (MLflow run {finding.run_id or '?'}). "
            f"The champion gate compares {finding.held_out_metric}. Scores are on the "
            f"model's training scale, {finding.scale}, as recorded in the run; residuals and "
            f"segments are recomputed on the current mart's {len(finding.actual):,} test rows."
        )
        if finding.scores.empty:
            section.text("The champion's run recorded no test metrics.")
        else:
            section.table(finding.scores, "Test metrics of the model and its baselines", digits=4)
            metric = held_out_column(finding)
            served = finding.scores[finding.scores.split == finding.scores.split.iloc[0]]
            section.chart(
                f"metrics_{finding.model_name}",
                charts.metrics_against_baselines(served, metric),
                f"{metric} on the test split: model against baselines",
            )
        section.chart(
            f"residuals_{finding.model_name}",
            charts.residual_plots(finding.actual, finding.predicted, finding.scale),
            "Predicted against actual, and residuals, on the test split",
        )
        small = finding.segments[finding.segments["small"]]
        section.text(
            f"Segments with fewer than {evaluate.SMALL_SEGMENT} test releases (column small): "
            f"{len(small)} of {len(finding.segments)}"
            + (f" ({', '.join(small.dimension + ' ' + small.segment.astype(str))})"
               if len(small) else "")
            + ". Their metrics are noisy, and they are where the model has least to learn from."
        )
        section.table(finding.segments, "Test metrics per platform, genre and decade", digits=3)
        if cards and finding.model_name in cards:
            card_section(section, cards[finding.model_name])
    return section


def card_section(section: Section, card: Document) -> None:
    """The report's parts of a model card (`model_card.report_parts`) as HTML;
    the whole card is the version's `model_card.md` artifact."""
    section.text(f"From the {card.title.lower()} (the whole card is logged with the version "
                 f"as {model_card.CARD_ARTIFACT}).")
    for part in model_card.report_parts(card):
        section.heading(part.title, level=4)
        for block in part.blocks:
            if isinstance(block, Table):
                section.table(block.frame, block.caption, digits=3)
            elif isinstance(block, Bullets):
                section.items(block.items)
            else:
                section.text(block)


def held_out_column(finding: ModelFindings) -> str:
    """The metric column the gate uses (`time_test_r2` -> `r2`), if recorded."""
    metric = finding.held_out_metric.split("_test_", 1)[-1]
    return metric if metric in finding.scores.columns else finding.scores.columns[2]


def missing_champion(section: Section, missing: MissingChampion) -> None:
    section.missing(missing.model_name, f"No champion is registered for {missing.model_name}, "
                    f"so this part is empty. {missing.reason}")


def render(sections: list[Section], subtitle: str) -> str:
    """The whole page: title, table of contents, sections."""
    return page.render("vgsales analytics report", subtitle, sections)


def build_sections(
    data: MartData,
    findings: list[ModelFindings | MissingChampion],
    database: str,
    progress: Callable[[str], None] = print,
    cards: dict[str, Document] | None = None,
    loads: LoadHistory | None = None,
) -> list[Section]:
    """Every section, in page order, from already-read data."""
    builders = [
        ("overview", lambda: overview_section(data, database)),
        ("categories", lambda: categories_section(data.releases)),
        ("distributions", lambda: distributions_section(data.releases)),
        ("time", lambda: time_section(data.releases)),
        ("rq1", lambda: rq1_section(data.releases)),
        ("rq2", lambda: rq2_section(findings)),
        ("rq3", lambda: rq3_section(data.releases)),
        ("model", lambda: model_section(findings, cards)),
    ]
    if loads is not None:
        builders.insert(1, ("loads", lambda: loads_section(loads)))
    sections = []
    for name, builder in builders:
        progress(f"[report] section {name}")
        sections.append(builder())
    return sections


def build_report(settings: Settings, out_dir: Path, progress: Callable[[str], None] = print) -> Path:
    """Write `out_dir/index.html` from the warehouse and registry of `settings`.

    Returns the path written. A model without a champion gets a notice in
    its sections instead of failing the report.
    """
    progress(f"[report] reading the marts of {settings.mariadb_database}")
    data = read_marts(settings)
    mart = read_ml_mart(settings)
    findings = []
    for model_name in features.MODEL_NAMES:
        progress(f"[report] champion of {model_name}: permutation importance on the test split")
        findings.append(champion_findings(model_name, settings, mart))
    warehouse = read_warehouse_facts(settings)
    cards = {
        finding.model_name: model_card.model_card(
            model_card.read_version_facts(settings, finding.model_name, finding.version),
            warehouse,
        )
        for finding in findings
        if isinstance(finding, ModelFindings)
    }
    sections = build_sections(data, findings, settings.mariadb_database, progress, cards,
                              read_load_history(settings))
    created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / REPORT_FILE
    path.write_text(render(sections, f"Built {created} from database {settings.mariadb_database}"),
                    encoding="utf-8")
    progress(f"[report] wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return path


REPORTS_EXPERIMENT = "vgsales-reports"


def log_report(path: Path, settings: Settings, tags: dict[str, str]) -> str:
    """Log the page as an artifact of a new run in `vgsales-reports`; returns the run id.

    A run of its own (not the models' runs): the report covers both models and
    the warehouse, and a rerun that registers nothing still gets its report.
    """
    from ml.modeling import registry

    mlflow_client = registry.client(settings)
    experiment = registry.experiment_id(mlflow_client, settings, REPORTS_EXPERIMENT)
    run = mlflow_client.create_run(experiment, tags=tags, run_name="analytics-report")
    mlflow_client.log_artifact(run.info.run_id, str(path))
    mlflow_client.set_terminated(run.info.run_id)
    return run.info.run_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports"),
                        help="output folder (default %(default)s)")
    args = parser.parse_args(argv)
    build_report(load_settings(), args.out)


if __name__ == "__main__":
    main()
