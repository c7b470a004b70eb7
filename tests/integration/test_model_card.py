"""The model card and datasheet, from a real warehouse and a real registry.

The warehouse is the session's dbt build (`marts_settings`: the real file when
present); the registry is a private MLflow store on SQLite holding two
prerelease versions trained on `tests.mart_sample`: version 1 as the pipeline
registers it today (no backtest), version 2 with the backtest figures,
interval coverage and tags logged to its run, as the forecast
work records them. Expected counts come from SQL written here, not from the
module under test.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from ml.data.fetch import EXPECTED_SHA256
from ml.modeling import evaluate, registry, train
from ml.reporting import model_card
from ml.reporting import page as report_page
from ml.reporting.analytics_report import card_section
from ml.reporting.page import Section
from ml.reporting.datasheet import UNDER_REPRESENTED_FRACTION, read_warehouse_facts
from tests.mart_sample import mart_frame

COUNT_SQL = {
    "platform": """
        select p.platform_code, count(*) from fct_sales f
        inner join dim_platform p on p.platform_id = f.platform_id
        where p.platform_code <> 'unknown' group by p.platform_code
    """,
    "genre": """
        select g.genre_name, count(*) from fct_sales f
        inner join dim_genre g on g.genre_id = f.genre_id
        where g.genre_name <> 'unknown' group by g.genre_name
    """,
    "decade": """
        select cast(y.decade as char(4)), count(*) from fct_sales f
        inner join dim_year y on y.year_id = f.year_id
        where y.decade is not null group by y.decade
    """,
}
BACKTEST_METRICS = {
    "backtest_r2_mean": 0.4712,
    "backtest_mae_mean": 0.1833,
    "backtest_rmse_mean": 0.2871,
    "backtest_r2_h1": 0.5123,
    "backtest_r2_h2": 0.4655,
    "backtest_r2_h3": 0.4358,
    "interval_coverage": 0.7934,
    "interval_width_median": 0.5521,
    "baseline_median_backtest_r2_mean": -0.0912,
    "baseline_hist_gb_four_fields_backtest_r2_mean": 0.3377,
}
BACKTEST_TAGS = {"fitted_rows": "16327", "fitted_years": "1980-2016", "data_last_year": "2015"}


def sql_counts(settings, dimension: str) -> dict[str, int]:
    engine = sa.create_engine(settings.sqlalchemy_url(reader=True))
    with engine.connect() as connection:
        rows = connection.execute(sa.text(COUNT_SQL[dimension])).all()
    engine.dispose()
    return {str(value): int(n) for value, n in rows}


@pytest.fixture(scope="module")
def card_settings(marts_settings, tmp_path_factory):
    home = tmp_path_factory.mktemp("card_mlflow")
    return dataclasses.replace(
        marts_settings,
        mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        mlflow_artifact_root=str(home / "artifacts"),
    )


@pytest.fixture(scope="module")
def versions(card_settings, tmp_path_factory):
    """Version 1 without a backtest, version 2 with one: `(v1, v2)` registrations."""
    registered = []
    for seed in (0, 1):
        mart = mart_frame(n_rows=600, seed=seed)
        fitted = train.fit("prerelease", mart)
        evaluation = evaluate.evaluate(fitted, mart)
        if seed == 0:
            # As a version registered before the backtest existed: judged on
            # the time split, without backtest, intervals or fitted-rows tags.
            evaluation = dataclasses.replace(
                evaluation, backtest=None, coverage=None, calibration=None,
                held_out_metric="time_test_r2",
            )
        registered.append(registry.register(fitted, evaluation, card_settings))
    first, second = registered
    assert (first.version, second.version) == (1, 2)
    client = MlflowClient(card_settings.mlflow_tracking_uri, card_settings.mlflow_tracking_uri)
    client.set_tag(first.run_id, "held_out_metric", "time_test_r2")
    for tag in model_card.VERSION_TAGS:
        client.delete_tag(first.run_id, tag)
        client.delete_model_version_tag("prerelease", str(first.version), tag)
    for name, value in BACKTEST_METRICS.items():
        client.log_metric(second.run_id, name, value)
    for name, value in BACKTEST_TAGS.items():
        client.set_tag(second.run_id, name, value)
    folder = tmp_path_factory.mktemp("backtest")
    pd.DataFrame(
        [
            {"origin": o, "horizon": h, "candidate": c, "n": 300, "r2": r2, "mae": 0.2, "rmse": 0.3}
            for o in (2010, 2011)
            for h in (1, 2, 3)
            for c, r2 in (("model", 0.5 - 0.02 * h), ("median", -0.09))
        ]
    ).to_csv(folder / "scores.csv", index=False)
    pd.DataFrame(
        [
            {
                "segment": "platform",
                "value": "seen",
                "n": 2500,
                "coverage": 0.801,
                "median_width": 0.55,
            },
            {
                "segment": "platform",
                "value": "unseen",
                "n": 140,
                "coverage": 0.612,
                "median_width": 0.71,
            },
            {"segment": "horizon", "value": "3", "n": 40, "coverage": 0.55, "median_width": 0.6},
        ]
    ).to_csv(folder / "coverage.csv", index=False)
    for name in ("scores.csv", "coverage.csv"):
        client.log_artifact(second.run_id, str(folder / name), "backtest")
    return first, second


@pytest.fixture(scope="module")
def cards(card_settings, versions):
    """The markdown card of each version and the datasheet, by version number."""
    texts = {}
    for registration in versions:
        _, documents = model_card.documents(card_settings, "prerelease", registration.version)
        texts[registration.version] = documents
    return texts


@pytest.mark.parametrize("dimension", ["platform", "genre", "decade"])
def test_card_names_under_represented_segments_with_the_warehouse_counts(
    card_settings, cards, dimension
):
    counts = sql_counts(card_settings, dimension)
    even = sum(counts.values()) / len(counts)
    few = sorted(
        ((n, value) for value, n in counts.items() if n < UNDER_REPRESENTED_FRACTION * even)
    )
    card = cards[1][model_card.CARD_ARTIFACT]
    if few:
        named = ", ".join(f"{value} ({n:,})" for n, value in few)
        sentence = f"Under-represented {dimension}s (releases in the warehouse): {named}."
    else:
        sentence = f"No {dimension} is under-represented."
    assert sentence in card
    assert sentence in cards[1][model_card.DATASHEET_ARTIFACT]
    largest = max(counts, key=counts.get)
    assert f"{largest} ({counts[largest]:,})" not in sentence


def test_some_segment_is_under_represented(card_settings):
    # On the real file (and the generated sample) some platform is thin; a
    # rule that names nothing would make the test above vacuous.
    counts = sql_counts(card_settings, "platform")
    assert min(counts.values()) < UNDER_REPRESENTED_FRACTION * sum(counts.values()) / len(counts)


def test_version_without_a_backtest_says_not_measured(card_settings, versions, cards):
    card = cards[1][model_card.CARD_ARTIFACT]
    assert "# Model card: prerelease, version 1" in card
    assert "Rolling-origin backtest: not measured for this version." in card
    assert "Prediction intervals and their coverage: not measured for this version." in card
    for tag in model_card.VERSION_TAGS:
        assert f"`{tag}`: not measured for this version." in card
    run = MlflowClient(card_settings.mlflow_tracking_uri).get_run(versions[0].run_id)
    r2 = run.data.metrics["time_test_r2"]
    assert f"`time_test_r2` = {r2:.4f}" in card
    # The per-segment error logged with the version is shown.
    assert "| platform | PS2 |" in card


def test_version_with_a_backtest_shows_its_figures(cards):
    card = cards[2][model_card.CARD_ARTIFACT]
    assert "not measured for this version" not in card.split("## Error per segment")[0]
    assert "| model | 0.4712 | 0.1833 | 0.2871 |" in card
    assert "| median | -0.0912 |" in card
    assert "| hist_gb_four_fields | 0.3377 |" in card
    assert "1 year ahead 0.512, 2 years ahead 0.466, 3 years ahead 0.436" in card
    assert "inside their interval: 79.3%; median interval width 0.552" in card
    # Only segments with 100+ rows are held to the 70% floor.
    assert "covered less than 70% of the time: platform unseen (61.2% of 140)." in card
    assert "| platform | unseen | 140 | 0.6120 | 0.7100 |" in card
    assert "Fitted on 16327 rows (1980-2016)." in card
    assert "the last complete year recorded with this version: 2015" in card or (
        "The incomplete last years" not in card
    )
    assert "(2 origins)" in card


def test_datasheet_counts_and_provenance_match_the_warehouse(card_settings, cards):
    sheet = cards[1][model_card.DATASHEET_ARTIFACT]
    engine = sa.create_engine(card_settings.sqlalchemy_url(reader=True))
    with engine.connect() as connection:
        accepted = connection.execute(sa.text("select count(*) from fct_sales")).scalar_one()
        rejected = connection.execute(sa.text("select count(*) from rejected_vgsales")).scalar_one()
    engine.dispose()
    assert f"{accepted + rejected:,} raw rows: {accepted:,} accepted releases" in sheet
    assert EXPECTED_SHA256 in sheet and "VGChartz" in sheet and "Kaggle" in sheet
    assert "never commits or redistributes the file" in sheet
    assert "no personal data" in sheet


def test_publish_logs_both_documents_with_the_version_and_writes_them(
    card_settings, versions, cards, tmp_path
):
    out = tmp_path / "reports"
    model_card.publish(card_settings, "prerelease", 2, out)
    client = MlflowClient(card_settings.mlflow_tracking_uri)
    run_id = versions[1].run_id
    logged = {a.path for a in client.list_artifacts(run_id)}
    assert {model_card.CARD_ARTIFACT, model_card.DATASHEET_ARTIFACT} <= logged
    local = client.download_artifacts(run_id, model_card.CARD_ARTIFACT, str(tmp_path))
    card = (out / "model_card_prerelease.md").read_text(encoding="utf-8")
    assert Path(local).read_text(encoding="utf-8") == card == cards[2][model_card.CARD_ARTIFACT]
    assert (out / "datasheet.md").read_text(encoding="utf-8") == cards[2][
        model_card.DATASHEET_ARTIFACT
    ]
    # The champion is the default version.
    facts = model_card.read_version_facts(card_settings, "prerelease")
    assert facts.version == int(client.get_model_version_by_alias("prerelease", "champion").version)


def test_report_shows_the_card_parts(card_settings, versions):
    facts = model_card.read_version_facts(card_settings, "prerelease", 1)
    card = model_card.model_card(facts, read_warehouse_facts(card_settings))
    section = Section("model", "Model")
    card_section(section, card)
    page = report_page.render("report", "", [section])
    for title in model_card.REPORT_PARTS:
        assert f"<h4>{title}</h4>" in page
    assert "Model details" not in page
    assert "Rolling-origin backtest: not measured for this version." in page
