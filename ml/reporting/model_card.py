"""The model card of a registered version, from the registry and the marts.

`read_version_facts` reads one registered version's run: metrics, tags and
the tables logged beside it (`evaluation/segments.csv`, and when the version
was backtested `backtest/scores.csv` and `backtest/coverage.csv`).
`model_card(version, warehouse)` writes the card after "Model Cards for
Model Reporting" (Mitchell et al.): details, intended and out-of-scope use,
metrics next to baselines, backtest and interval coverage, error per
segment, who is under-represented, what the model cannot know, how the
differentially private release relates, and ethics, privacy and legality.

A figure the version did not record is written as "not measured for this
version", never guessed or filled from another version.

`publish` logs the card and the datasheet (`ml.reporting.datasheet`) to the
version's MLflow run as `model_card.md` and `datasheet.md`, and optionally
writes them to a folder. CLI: `python -m ml.reporting.model_card --out
reports` documents each champion (what `make model-card` runs).
"""

from __future__ import annotations

import argparse
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from ml import features
from ml.modeling import champions, goals, shapes
from ml.modeling.intervals import GOAL_SEGMENT_ROWS
from ml.reporting import datasheet as sheet
from ml.reporting.document import Bullets, Document, Part, Table, write_text
from ml.reporting.model_findings import recorded_scores
from ml.settings import Settings, load_settings

NOT_MEASURED = "not measured for this version"
CARD_ARTIFACT = "model_card.md"
DATASHEET_ARTIFACT = "datasheet.md"
SEGMENTS_ARTIFACT = "evaluation/segments.csv"
BACKTEST_SCORES_ARTIFACT = "backtest/scores.csv"
COVERAGE_ARTIFACT = "backtest/coverage.csv"
BACKTEST_METRICS = ("r2", "mae", "rmse")
HORIZONS = (1, 2, 3)
VERSION_TAGS = ("fitted_rows", "fitted_years", "data_last_year")
BASELINE_BACKTEST = re.compile(r"^baseline_(?P<name>.+)_backtest_(?P<metric>r2|mae|rmse)_mean$")

# Titles of the parts the analytics report shows beside its own model section.
INTENDED_USE = "Intended use"
BACKTEST = "Backtest: forecasting years the model has not seen"
SHAPES = "What each missing field costs: the backtest by request shape"
INTERVALS = "Prediction intervals"
UNDER_REPRESENTED = "Who is under-represented"
CANNOT_KNOW = "What the model cannot know"
DP_RELEASE = "The differentially private release"
ETHICS = "Ethics, privacy and legality"
REPORT_PARTS = (
    INTENDED_USE,
    BACKTEST,
    INTERVALS,
    UNDER_REPRESENTED,
    CANNOT_KNOW,
    DP_RELEASE,
    ETHICS,
)

USES = {
    "prerelease": (
        (
            (
                "An order-of-magnitude estimate of one release's lifetime global unit sales "
                "(millions) before launch, from what is known then: platform, genre, "
                "publisher, year, and the platform's, publisher's and series' history in the "
                "data."
            ),
            (
                "Planning and comparing scenarios (this platform or that one, this year or "
                "the next), read together with the interval and the error tables below."
            ),
        ),
        (
            (
                "A precise figure for budgets, contracts, valuations or investment: the errors "
                "and intervals below are too wide for that."
            ),
            (
                "Judging a game's quality, or the work of a studio or of anyone in it: the "
                "model knows neither, and the data holds no people."
            ),
            (
                "Revenue, prices, regional splits or digital sales: it forecasts global units "
                "as VGChartz estimated them, nothing else."
            ),
            ("Sales after launch: once a release is out, its recorded sales replace any forecast."),
            "Deciding alone which games get made, funded or stocked (see Ethics below).",
        ),
    ),
    "global_from_regional": (
        (
            (
                "The original design's reference run and the `/predict` compatibility "
                "endpoint: global sales from platform, year, genre and the four regional "
                "sales figures."
            ),
            "A check that training, registry and serving work end to end.",
        ),
        (
            "Forecasting: it needs the regional sales, which exist only after release.",
            (
                "Knowing global sales from regional ones: they are the regions' sum, so add "
                "them up instead of asking the model."
            ),
        ),
    ),
}


@dataclass(frozen=True)
class VersionFacts:
    """One registered version: its run's metrics and tags, and the tables logged with it."""

    model_name: str
    version: int
    run_id: str
    aliases: tuple[str, ...]
    metrics: dict[str, float]
    tags: dict[str, str]
    segments: pd.DataFrame | None
    backtest_scores: pd.DataFrame | None
    coverage: pd.DataFrame | None

    def metric(self, name: str) -> float | None:
        return self.metrics.get(name)

    @property
    def backtested(self) -> bool:
        return f"backtest_{BACKTEST_METRICS[0]}_mean" in self.metrics


def _artifact_table(mlflow_client: MlflowClient, run_id: str, path: str) -> pd.DataFrame | None:
    """A CSV artifact of the run as a frame, or None when the run has none."""
    folder, _, name = path.rpartition("/")
    if name not in {Path(a.path).name for a in mlflow_client.list_artifacts(run_id, folder)}:
        return None
    with tempfile.TemporaryDirectory() as local:
        return pd.read_csv(mlflow_client.download_artifacts(run_id, path, local))


def read_version_facts(
    settings: Settings, model_name: str, version: int | str | None = None
) -> VersionFacts:
    """Facts of `version` of `model_name` (the champion when None) from the registry."""
    mlflow_client = champions.client(settings)
    if version is None:
        champion = champions.current_champion(mlflow_client, model_name)
        if champion is None:
            raise champions.NoChampionError(
                f"model {model_name!r} has no {champions.CHAMPION} in the registry; "
                "run the pipeline first (make pipeline)"
            )
        version = champion.version
    model_version = mlflow_client.get_model_version(model_name, str(version))
    run = mlflow_client.get_run(model_version.run_id)
    run_id = model_version.run_id
    return VersionFacts(
        model_name=model_name,
        version=int(model_version.version),
        run_id=run_id,
        aliases=tuple(model_version.aliases),
        metrics=dict(run.data.metrics),
        tags={k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
        segments=_artifact_table(mlflow_client, run_id, SEGMENTS_ARTIFACT),
        backtest_scores=_artifact_table(mlflow_client, run_id, BACKTEST_SCORES_ARTIFACT),
        coverage=_artifact_table(mlflow_client, run_id, COVERAGE_ARTIFACT),
    )


def _figure(value: float | None, digits: int = 3) -> str:
    return NOT_MEASURED if value is None else f"{value:.{digits}f}"


def details_part(facts: VersionFacts) -> Part:
    spec = features.spec(facts.model_name)
    tags = facts.tags
    # The gate metric this version was judged on (older versions: the time split).
    gate_metric = tags.get("held_out_metric", spec.held_out_metric)
    held_out = facts.metric(gate_metric)
    items = [
        (
            f"Model `{facts.model_name}`, version {facts.version}, MLflow run `{facts.run_id}`; "
            f"aliases when this card was written: {', '.join(facts.aliases) or 'none'}."
        ),
        (
            f"Champion gate: {tags.get('gate.decision', 'no decision recorded')} "
            f"({tags.get('gate.reason', 'no reason recorded')})."
        ),
        (
            f"Trained at {tags.get('trained_at', '?')} on data digest "
            f"`{tags.get('data_digest', '?')}` (mart fingerprint "
            f"`{tags.get('mart_fingerprint', 'not recorded')}`)."
        ),
        f"Predicts {'log1p(global sales)' if spec.log_label else 'global sales'} from: "
        + ", ".join(f"`{c}`" for c in spec.columns)
        + ".",
        f"Held-out metric of the gate: `{gate_metric}` = {_figure(held_out, 4)}.",
    ]
    for tag in VERSION_TAGS:
        items.append(f"`{tag}`: {tags.get(tag, NOT_MEASURED)}.")
    return Part("Model details", [Bullets(tuple(items))])


def uses_part(facts: VersionFacts) -> Part:
    intended, excluded = USES[facts.model_name]
    return Part(
        INTENDED_USE,
        [Bullets(intended), "It must not be used for:", Bullets(excluded)],
    )


def training_data_part(facts: VersionFacts) -> Part:
    spec = features.spec(facts.model_name)
    split = spec.split.removeprefix("split_")
    fitted = facts.tags.get("fitted_rows")
    rows = facts.metric(f"{split}_train_rows")
    text = (
        f"Fitted on {fitted} rows ({facts.tags.get('fitted_years', 'years not recorded')})."
        if fitted
        else f"Fitted on the train part of its split `{spec.split}`"
        + (f" ({rows:,.0f} rows)." if rows is not None else ".")
    )
    return Part(
        "Training data",
        [
            text + " The rows come from the warehouse's ML mart `ml_release_features` "
            "(vgsales.csv and the reference seeds only); `datasheet.md`, logged beside "
            "this card, describes that data."
        ],
    )


def held_out_part(facts: VersionFacts) -> Part:
    part = Part("Held-out metrics next to baselines")
    scores = recorded_scores(facts.model_name, facts.metrics)
    if scores.empty:
        part.blocks.append(f"Held-out metrics: {NOT_MEASURED}.")
        return part
    scale = "log1p scale" if features.spec(facts.model_name).log_label else "millions"
    part.blocks.append(
        Table(scores, f"Test rows of each split ({scale}; mae_millions in millions of units)")
    )
    return part


def backtest_part(facts: VersionFacts) -> Part:
    part = Part(BACKTEST)
    if not facts.backtested:
        part.blocks.append(
            f"Rolling-origin backtest: {NOT_MEASURED}. This version was judged on its "
            "held-out split only (above)."
        )
        return part
    rows = [
        {"candidate": "model", **{m: facts.metric(f"backtest_{m}_mean") for m in BACKTEST_METRICS}}
    ]
    baselines: dict[str, dict[str, float]] = {}
    for name, value in facts.metrics.items():
        match = BASELINE_BACKTEST.match(name)
        if match:
            baselines.setdefault(match["name"], {})[match["metric"]] = value
    rows += [{"candidate": name, **values} for name, values in sorted(baselines.items())]
    table = pd.DataFrame(rows, columns=["candidate", *BACKTEST_METRICS])
    part.blocks.append(Table(table, "Mean over origins and horizons (log1p scale)"))
    part.blocks.append(
        "log1p R² by horizon: "
        + ", ".join(
            f"{h} year{'s' if h > 1 else ''} ahead {_figure(facts.metric(f'backtest_r2_h{h}'))}"
            for h in HORIZONS
        )
        + "."
    )
    if facts.backtest_scores is not None and not facts.backtest_scores.empty:
        scores = facts.backtest_scores
        if "shape" in scores.columns:
            scores = scores[scores["shape"] == shapes.FULL]
        by_horizon = (
            scores.groupby(["candidate", "horizon"])["r2"]
            .mean()
            .unstack("horizon")
            .rename(columns=lambda h: f"r2, horizon {h}")
            .reset_index()
        )
        part.blocks.append(
            Table(
                by_horizon,
                f"Mean log1p R² per candidate and horizon ({scores.origin.nunique()} origins)",
            )
        )
    return part


def _shortfall(value: float | None, target: float) -> str:
    if value is None:
        return NOT_MEASURED
    if value >= target:
        return f"{value:.3f}, met (≥ {target:.3f})"
    return f"{value:.3f}, **missed by {target - value:.3f}** (goal ≥ {target:.3f})"


def shapes_part(facts: VersionFacts) -> Part:
    """Each request shape's backtest beside the four-field baseline, and the
    forecast goals with any miss stated by how much."""
    part = Part(SHAPES)
    table = shapes.scores(facts.metrics)
    if table is None:
        part.blocks.append(f"Scores by request shape: {NOT_MEASURED}.")
        return part
    part.blocks.append(Table(goals.shapes_frame(table), "Backtest by request shape (log1p "
                             "scale; the baseline reads the four required fields of the same rows)"))
    no_title_bar = max(goals.NO_TITLE_R2, facts.metric(
        f"baseline_{shapes.BASELINE}_backtest_shape_{shapes.NO_TITLE}_r2_mean") or 0.0)
    part.blocks.append(Bullets((
        "Full request, backtest R²: "
        + _shortfall(facts.metric(f"backtest_shape_{shapes.FULL}_r2_mean"), goals.BACKTEST_R2),
        "No title, backtest R² (goal: the baseline and 0.30): "
        + _shortfall(facts.metric(f"backtest_shape_{shapes.NO_TITLE}_r2_mean"), no_title_bar),
        "Time split R²: " + _shortfall(facts.metric("time_test_r2"), goals.TIME_SPLIT_R2),
        "Weighted mean over shapes (the champion gate's metric): "
        + _figure(facts.metric("backtest_r2_shapes_mean")),
    )))
    return part


def intervals_part(facts: VersionFacts) -> Part:
    part = Part(INTERVALS)
    coverage = facts.metric("interval_coverage")
    if coverage is None:
        part.blocks.append(f"Prediction intervals and their coverage: {NOT_MEASURED}.")
        return part
    part.blocks.append(
        f"Share of backtest releases whose sales fell inside their interval: "
        f"{coverage:.1%}; median interval width {_figure(facts.metric('interval_width_median'))}."
    )
    table = facts.coverage
    if table is None or table.empty:
        part.blocks.append(f"Coverage per segment: {NOT_MEASURED}.")
        return part
    short = table[(table.n >= GOAL_SEGMENT_ROWS) & (table.coverage < goals.SEGMENT_COVERAGE)]
    part.blocks.append(
        f"Segments with {GOAL_SEGMENT_ROWS} or more rows covered less than "
        f"{goals.SEGMENT_COVERAGE:.0%} of the time: "
        + (
            ", ".join(
                f"{r.segment} {r.value} ({r.coverage:.1%} of {r.n:,})" for r in short.itertuples()
            )
            or "none"
        )
        + "."
    )
    part.blocks.append(Table(table, "Interval coverage and median width per segment"))
    return part


def segments_part(facts: VersionFacts, warehouse: sheet.WarehouseFacts) -> Part:
    part = Part("Error per segment")
    if facts.segments is None or facts.segments.empty:
        part.blocks.append(f"Error per segment: {NOT_MEASURED}.")
        return part
    flags = {
        (d, str(v)): "yes" for d in sheet.DIMENSIONS for v in warehouse.under_represented(d).value
    }
    segments = facts.segments.astype({"segment": str})
    segments["segment"] = [
        s.removesuffix(".0") if d == "decade" else s
        for d, s in zip(segments.dimension, segments.segment)
    ]
    segments["under-represented"] = [
        flags.get((d, s), "") for d, s in zip(segments.dimension, segments.segment)
    ]
    part.blocks.append(
        "Held-out error of this version per platform, genre and decade, as logged with "
        "it (`evaluation/segments.csv`); rows are the segment's test rows, and "
        "under-represented marks the warehouse's thin segments."
    )
    part.blocks.append(Table(segments, "Held-out error per segment"))
    return part


def under_represented_part(warehouse: sheet.WarehouseFacts) -> Part:
    part = Part(UNDER_REPRESENTED, [sheet.representation_rule()])
    part.blocks.append(
        Bullets(tuple(sheet.representation_sentence(warehouse, d) for d in sheet.DIMENSIONS))
    )
    part.blocks.append(
        "Fewer releases mean less to learn from: expect larger errors there, and read the "
        "segment tables above before trusting a forecast for them."
    )
    return part


def cannot_know_part(facts: VersionFacts, warehouse: sheet.WarehouseFacts) -> Part:
    items = [
        (
            "Marketing, price, reviews, a title's quality, its launch date within the year "
            "and its competition: none of these is in the data."
        ),
        (
            f"Anything after the data ends ({warehouse.last_year}): platforms, publishers, "
            "franchises and market changes that came later."
        ),
    ]
    if warehouse.reference_only_platforms:
        items.append(
            "Platforms described by the reference seed but without a single release in "
            "the data, so without sales to learn from: "
            + ", ".join(warehouse.reference_only_platforms)
            + "."
        )
    if warehouse.thin_tail:
        items.append(
            "The incomplete last years: "
            + ", ".join(str(y) for y in warehouse.thin_tail)
            + f" hold less than {sheet.COMPLETE_YEAR_SHARE:.0%} of the busiest year's releases"
            " each in the file; "
            f"the last complete year recorded with this version: "
            f"{facts.tags.get('data_last_year', NOT_MEASURED)}."
        )
    if facts.model_name == "prerelease":
        items.append(
            "A publisher or genre it never saw: the API flags it in `unseen` and the "
            "forecast falls back to what rare ones get."
        )
    return Part(CANNOT_KNOW, [Bullets(tuple(items))])


def dp_part() -> Part:
    return Part(
        DP_RELEASE,
        [
            (
                "`make dp-release` (`ml/reporting/dp_release.py`) publishes release counts and "
                "clamped global-sales sums per genre × platform × decade with Laplace noise "
                "calibrated by OpenDP, and records the privacy budget it spent."
            ),
            Bullets(
                (
                    (
                        "What it protects: whether any one release is in the data, within the "
                        "epsilon spent, for those published aggregates only."
                    ),
                    (
                        "What it does not protect: this model, its card, the analytics report, "
                        "the warehouse and the API are computed from the exact data and carry "
                        "no differential-privacy guarantee; the model never trains on the "
                        "noisy table."
                    ),
                    (
                        "Why it matters little here: the data is public aggregate sales with "
                        "no personal data, and anyone can read the exact figures in the public "
                        "file. The release shows how the project would publish aggregates of "
                        "data that did need protecting."
                    ),
                )
            ),
        ],
    )


def ethics_part() -> Part:
    return Part(
        ETHICS,
        [
            Bullets(
                (
                    "Privacy: " + sheet.privacy_text(),
                    (
                        "Legality: the project states no licence for the data and never "
                        "redistributes the file; its terms are on its Kaggle page and, for the "
                        "figures, in VGChartz's terms of use (see `datasheet.md`, Provenance). "
                        "Check them before publishing results or using them commercially. "
                        "Titles and platform names are their owners' trademarks, used here "
                        "as data."
                    ),
                    (
                        "Fairness: the forecast leans on publishers' and franchises' past "
                        "sales, so established names get higher forecasts and new or small "
                        "publishers the fallback for rare ones. Used to decide alone which "
                        "games get made, funded or stocked, it would reinforce that: treat it "
                        "as one input among others."
                    ),
                )
            )
        ],
    )


def model_card(facts: VersionFacts, warehouse: sheet.WarehouseFacts) -> Document:
    """The card of one registered version, with the warehouse's representation."""
    document = Document(f"Model card: {facts.model_name}, version {facts.version}")
    document.parts = [
        details_part(facts),
        uses_part(facts),
        training_data_part(facts),
        held_out_part(facts),
        backtest_part(facts),
        shapes_part(facts),
        intervals_part(facts),
        segments_part(facts, warehouse),
        under_represented_part(warehouse),
        cannot_know_part(facts, warehouse),
        dp_part(),
        ethics_part(),
    ]
    return document


def report_parts(card: Document) -> list[Part]:
    """The parts of a card that the analytics report shows in its model section."""
    return [part for part in card.parts if part.title in REPORT_PARTS]


def documents(
    settings: Settings, model_name: str, version: int | str | None = None
) -> tuple[VersionFacts, dict[str, str]]:
    """The version's facts and its two documents as markdown, by artifact name."""
    facts = read_version_facts(settings, model_name, version)
    warehouse = sheet.read_warehouse_facts(settings)
    return facts, {
        CARD_ARTIFACT: model_card(facts, warehouse).to_markdown(),
        DATASHEET_ARTIFACT: sheet.datasheet(warehouse).to_markdown(),
    }


def publish(
    settings: Settings,
    model_name: str,
    version: int | str | None = None,
    out_dir: Path | None = None,
) -> list[str]:
    """Log the card and datasheet to the version's run; with `out_dir`, also
    write `model_card_<model>.md` and `datasheet.md` there. Returns where
    each went."""
    facts, texts = documents(settings, model_name, version)
    mlflow_client = champions.client(settings)
    places = []
    for name, text in texts.items():
        mlflow_client.log_text(facts.run_id, text, name)
        places.append(f"run {facts.run_id}: {name}")
    if out_dir is not None:
        files = {
            f"model_card_{model_name}.md": texts[CARD_ARTIFACT],
            DATASHEET_ARTIFACT: texts[DATASHEET_ARTIFACT],
        }
        places += [str(write_text(out_dir / name, text)) for name, text in files.items()]
    return places


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        choices=features.MODEL_NAMES,
        action="append",
        help="model to document (default: every model with a champion)",
    )
    parser.add_argument("--version", help="registered version (default: the champion)")
    parser.add_argument(
        "--out", type=Path, default=Path("reports"), help="output folder (default %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.version and (not args.model or len(args.model) != 1):
        parser.error("--version needs exactly one --model")
    settings = load_settings()
    for model_name in args.model or features.MODEL_NAMES:
        try:
            places = publish(settings, model_name, args.version, args.out)
        except champions.NoChampionError as error:
            print(f"[model-card] {model_name}: skipped: {error}")
            continue
        print(f"[model-card] {model_name}: " + "; ".join(places))


if __name__ == "__main__":
    main()
