"""The analytics report: its numbers, its sections and charts, and a real build.

Unit tests render the report from small generated frames (every section and
chart present, images real PNGs, numbers right); the champion section is
tested with a champion trained on `tests.mart_sample` and registered in a
private MLflow store; one integration test builds the warehouse with dbt and
renders the report from its marts, the no-champion path included.
"""

from __future__ import annotations

import base64
import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from ml import features
from ml.modeling import evaluate, registry, train
from ml.reporting import analytics_report as report
from ml.reporting import tables
from ml.reporting.data import MartData, typed_releases
from ml.warehouse.loads import LoadHistory
from ml.reporting.model_findings import (
    MissingChampion,
    ModelFindings,
    champion_findings,
    recorded_scores,
)
from tests.helpers import isolated_settings
from tests.mart_sample import mart_frame

DATA_CHARTS = [
    "bars_platform", "bars_genre", "bars_publisher",
    "hist_global", "hist_regional", "box_genre", "box_platform", "heatmap_correlation",
    "lines_year", "lines_decade",
    "rq1_genre_region_decade", "rq1_manufacturer_region_decade",
    "rq3_platform_years", "rq3_genre_years",
]
SECTIONS = ["overview", "categories", "distributions", "time", "rq1", "rq2", "rq3", "model"]
PLATFORMS = {"PS2": "Sony", "Wii": "Nintendo", "X360": "Microsoft", "DS": "Nintendo", "PC": "Various"}
GENRES = ["Action", "Sports", "Puzzle", "Role-Playing", "Shooter"]


def generated_releases(n_rows: int = 900, seed: int = 0) -> pd.DataFrame:
    """Release rows shaped like `read_marts().releases`, across three decades."""
    rng = np.random.default_rng(seed)
    regional = np.round(rng.lognormal(-2.3, 1.3, size=(n_rows, 4)), 2)
    regional[rng.random((n_rows, 4)) < 0.2] = 0.0
    year = rng.integers(1990, 2017, n_rows).astype(float)
    year[:12] = np.nan
    platform = rng.choice(list(PLATFORMS), n_rows)
    frame = pd.DataFrame(
        {
            "release_id": [f"r{i:05d}" for i in range(n_rows)],
            "name": [f"Game {i % 400}" for i in range(n_rows)],
            "platform": platform,
            "manufacturer": [PLATFORMS[p] for p in platform],
            "genre": rng.choice(GENRES, n_rows),
            "publisher": rng.choice([f"Publisher {i}" for i in range(25)], n_rows),
            "year": year,
            "decade": np.floor(year / 10) * 10,
            "na_sales": regional[:, 0],
            "eu_sales": regional[:, 1],
            "jp_sales": regional[:, 2],
            "other_sales": regional[:, 3],
        }
    )
    frame["global_sales"] = regional.sum(axis=1).round(2)
    frame["is_year_before_platform_launch"] = False
    return typed_releases(frame)


def chart_images(page: str) -> dict[str, bytes]:
    found = re.findall(r'data-chart="([^"]+)"><img alt="[^"]*" src="data:image/png;base64,([^"]+)"', page)
    return {name: base64.b64decode(data) for name, data in found}


def assert_complete_page(page: str, charts: list[str]) -> None:
    """Every section, every chart as a real embedded PNG, nothing fetched."""
    for section in SECTIONS:
        assert f'<section id="{section}">' in page, section
    images = chart_images(page)
    assert sorted(images) == sorted(charts)
    for name, png in images.items():
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000, name
    assert not re.search(r'(src|href)="(https?:)?//', page)


@pytest.fixture(scope="module")
def releases() -> pd.DataFrame:
    return generated_releases()


@pytest.fixture(scope="module")
def mart_data(releases) -> MartData:
    rejected = pd.DataFrame({"reason_code": ["invalid_year", "duplicate_release"], "raw_rows": [4, 2]})
    return MartData(releases=releases, rejected=rejected)


def test_page_without_champions_has_every_section_and_chart(mart_data):
    missing = [MissingChampion(m, "no champion in this store") for m in features.MODEL_NAMES]
    sections = report.build_sections(mart_data, missing, "vgsales_unit", progress=lambda _: None)
    page = report.render(sections, "unit test")
    assert_complete_page(page, DATA_CHARTS)
    for model_name in features.MODEL_NAMES:
        # Once under RQ2, once in the model section.
        assert page.count(f'data-missing-champion="{model_name}"') == 2
    assert "900 accepted releases" in page and "6 raw rows were quarantined" in page


def test_region_shares_add_up_and_leaders_are_the_largest(releases):
    shares = tables.region_share_by_decade(releases)
    region_columns = [c for c in shares.columns if c.endswith(" %")]
    assert list(shares.decade) == ["1990s", "2000s", "2010s"]
    assert np.allclose(shares[region_columns].sum(axis=1), 100)
    leaders = tables.leaders_by_region_decade(releases)
    row = leaders[(leaders.decade == "2000s") & (leaders.region == "Japan")].iloc[0]
    decade = releases[releases.decade == 2000]
    by_genre = decade.groupby("genre")["jp_sales"].sum()
    assert row["top genre"] == by_genre.idxmax()
    assert row["genre share %"] == pytest.approx(100 * by_genre.max() / by_genre.sum())


def test_genre_mix_per_region_decade_sums_to_100(releases):
    mix = tables.share_within_region_decade(releases, "genre")
    assert mix.shape == (len(GENRES), 4 * 3)
    assert np.allclose(mix.sum(axis=0), 100)
    genres = tables.genre_share_by_decade(releases)
    decade_columns = [c for c in genres.columns if c.endswith("s %")]
    assert np.allclose(genres[decade_columns].sum(axis=0), 100)
    assert genres["change, points"].is_monotonic_decreasing


def test_small_decades_are_left_out_of_comparisons(releases):
    few = generated_releases(60, seed=3).assign(year=1985, decade=1980).iloc[:10]
    combined = typed_releases(pd.concat([releases, few], ignore_index=True))
    assert tables.comparable_decades(combined) == [1990, 2000, 2010]


def test_platform_lifecycle_peak_is_the_busiest_year():
    rows = typed_releases(pd.DataFrame({
        "release_id": [f"r{i}" for i in range(8)],
        "platform": ["Wii"] * 5 + ["DS"] * 3, "manufacturer": "Nintendo", "genre": "Action",
        "publisher": "P", "name": "G",
        "year": [2006, 2007, 2007, 2007, 2010, 2005, 2008, 1985],
        "decade": [2000] * 7 + [1980],
        "na_sales": 1.0, "eu_sales": 0.0, "jp_sales": 0.0, "other_sales": 0.0,
        "global_sales": 1.0,
        # The warehouse's flag: a DS game dated 1985, before the DS existed.
        "is_year_before_platform_launch": [False] * 7 + [True],
    }))
    lifecycles = tables.platform_lifecycles(rows).set_index("platform")
    wii = lifecycles.loc["Wii"]
    assert (wii["first year"], wii["peak year"], wii["peak-year releases"], wii["last year"]) == (
        2006, 2007, 3, 2010)
    assert wii["years active"] == 5 and wii["releases"] == 5
    ds = lifecycles.loc["DS"]
    assert (ds["first year"], ds["years active"], ds["releases"]) == (2005, 4, 2)
    assert list(tables.dated_before_launch(rows).release_id) == ["r7"]
    section = report.rq3_section(pd.concat([rows, generated_releases(300)], ignore_index=True))
    page = report.render([section], "")
    assert "leave out 1 release dated before their platform" in page and "(DS 1)" in page


def test_recorded_scores_read_the_evaluation_metric_names():
    metrics = {
        "time_test_r2": 0.4, "time_test_rmse": 0.5, "random_test_r2": 0.45,
        "baseline_median_time_test_r2": -0.01, "baseline_label_encoded_forest_time_test_r2": 0.2,
        "cv_r2_mean": 0.3, "time_train_r2": 0.9,
    }
    scores = recorded_scores("prerelease", metrics).set_index(["split", "candidate"])
    assert scores.loc[("time", "model"), "r2"] == 0.4
    assert scores.loc[("time", "median"), "r2"] == -0.01
    assert scores.loc[("random", "model"), "r2"] == 0.45
    assert ("random", "median") not in scores.index
    assert recorded_scores("prerelease", {}).empty


@pytest.fixture(scope="module")
def registered(stack_settings, tmp_path_factory):
    """A prerelease champion trained on a sample mart, in a private MLflow."""
    settings = isolated_settings(
        stack_settings, "report_unit", 9, tmp_path_factory.mktemp("report_mlflow")
    )
    mart = mart_frame(n_rows=600)
    fitted = train.fit("prerelease", mart)
    registration = registry.register(fitted, evaluate.evaluate(fitted, mart), settings)
    assert registration.promoted
    return settings, mart, registration


@pytest.fixture(scope="module")
def findings(registered):
    """What the report reads from that registry, once for the tests below."""
    settings, mart, _ = registered
    return [champion_findings(m, settings, mart) for m in features.MODEL_NAMES]


def test_champion_findings_come_from_the_registry(registered, findings):
    _, mart, registration = registered
    by_model = {f.model_name: f for f in findings}
    found, other = by_model["prerelease"], by_model["global_from_regional"]
    assert isinstance(found, ModelFindings)
    assert (found.version, found.run_id) == (registration.version, registration.run_id)
    test_rows = (mart.split_time == "test").sum()
    assert len(found.actual) == len(found.predicted) == test_rows
    spec = features.spec("prerelease")
    assert sorted(found.importance.feature) == sorted(spec.columns)
    assert found.importance.permutation_r2_drop.is_monotonic_decreasing
    scores = found.scores.set_index(["split", "candidate"])
    assert {("time", "model"), ("time", "median"), ("time", "label_encoded_forest")} <= set(scores.index)
    assert set(found.segments.dimension) == {"platform", "genre", "decade"}
    assert found.segments.loc[found.segments.dimension == "platform", "rows"].sum() == test_rows
    assert isinstance(other, MissingChampion) and "no champion" in other.reason


def test_page_with_a_champion_shows_importance_metrics_and_residuals(findings, mart_data):
    page = report.render(
        report.build_sections(mart_data, findings, "vgsales_unit", progress=lambda _: None), "unit"
    )
    assert_complete_page(
        page,
        DATA_CHARTS + ["rq2_importance_prerelease", "metrics_prerelease", "residuals_prerelease"],
    )
    assert page.count('data-missing-champion="global_from_regional"') == 2
    assert "data-missing-champion=\"prerelease\"" not in page
    prerelease = next(f for f in findings if f.model_name == "prerelease")
    top = prerelease.importance.feature.iloc[0]
    assert f"the most important inputs are {top} (R² drop" in page


@pytest.mark.slow
def test_report_from_a_real_warehouse_without_champions(marts_settings, tmp_path):
    settings = dataclasses.replace(
        marts_settings, mlflow_tracking_uri=f"sqlite:///{tmp_path / 'empty_mlflow.db'}"
    )
    path = report.build_report(settings, tmp_path / "reports", progress=lambda _: None)
    assert path == tmp_path / "reports" / "index.html"
    page = path.read_text(encoding="utf-8")
    assert_complete_page(page, DATA_CHARTS)
    for model_name in features.MODEL_NAMES:
        assert page.count(f'data-missing-champion="{model_name}"') == 2
    engine = sa.create_engine(settings.sqlalchemy_url(reader=True))
    with engine.connect() as connection:
        releases, sales = connection.execute(
            sa.text("select count(*), sum(global_sales) from fct_sales")
        ).one()
        misdated = connection.execute(
            sa.text("select count(*) from fct_sales where is_year_before_platform_launch")
        ).scalar()
    engine.dispose()
    assert f"{releases:,} accepted releases" in page
    if misdated:  # the real file: 4 DS rows dated 1985
        assert f"leave out {misdated:,} releases dated before" in page
    assert f"({float(sales):,.1f} million units sold worldwide)" in page


def test_loads_section_states_what_the_latest_load_changed(mart_data):
    loads = pd.DataFrame({
        "load_number": [1, 2], "loaded_at": ["2026-01-01 06:00:00", "2026-05-01 06:00:00"],
        "file_sha256": ["a" * 64, "b" * 64], "releases": [16_595, 18_000],
        "added": [16_595, 1_410], "revised": [0, 830], "removed": [0, 5]})
    largest = pd.DataFrame({
        "game_name": ["Wii Sports"], "platform_code": ["Wii"], "release_year": [2006],
        "previous_global_sales": [82.74], "global_sales": [83.24], "global_sales_change": [0.5]})
    missing = [MissingChampion(m, "no champion in this store") for m in features.MODEL_NAMES]
    sections = report.build_sections(mart_data, missing, "vgsales_unit", progress=lambda _: None,
                                     loads=LoadHistory(loads, largest))
    page = report.render(sections, "unit test")
    assert [s.id for s in sections][:2] == ["overview", "loads"]
    assert "Load 2 (file `bbbbbbbbbbbb`, loaded 2026-05-01 06:00:00), against load 1: " \
           "1,410 added, 830 revised, 5 removed releases." in page
    assert "Largest revisions of load 2" in page and "Wii Sports" in page
