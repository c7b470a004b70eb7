"""DP release: noise scale, accounting, reproducibility and the public grid
(no service: the release over a real warehouse is tests/integration/test_dp_release.py).

The statistical checks use about 20,000 cells per query, where the empirical
standard deviation of Laplace noise is within 0.8% (one standard error) of
sqrt(2) * sensitivity / epsilon; the 4% tolerance is five standard errors, so
the unseeded (OpenDP, OS randomness) path is checked as firmly as the seeded
one.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from ml.reporting import dp_release
from ml.settings import load_settings

STD_TOLERANCE = 0.04


def wide_domain() -> pd.DataFrame:
    """100 genres x 70 platforms x (2 decades + unknown) = 21,000 cells."""
    platforms = pd.DataFrame(
        {"platform_code": [f"P{i}" for i in range(70)], "launch_year": [None] * 70}
    )
    return dp_release.domain_from([f"G{i}" for i in range(100)], platforms, [1990, 2000])


def some_rows() -> pd.DataFrame:
    """Releases in a few cells, one far above the clamp and one of unknown year."""
    return pd.DataFrame(
        {
            "genre": ["G0", "G0", "G1", "G2", "G3"],
            "platform": ["P0", "P0", "P1", "P2", "P3"],
            "decade": [1990, 1990, 2000, None, 1990],
            "global_sales": [1.5, 82.74, 0.25, 3.0, 2.0],
        }
    )


@pytest.fixture(scope="module")
def domain() -> pd.DataFrame:
    return wide_domain()


def noise_of(result: dp_release.DpRelease, exact: pd.DataFrame, column: str) -> np.ndarray:
    return result.table[column].to_numpy() - exact[column].to_numpy()


@pytest.mark.parametrize("seed", [None, 11], ids=["opendp", "seeded"])
@pytest.mark.parametrize(
    ("epsilon", "count_share", "upper"),
    [(1.0, 0.5, 10.0), (2.0, 0.25, 5.0), (0.3, 0.5, 10.0)],
)
def test_noise_scale_matches_epsilon_and_sensitivity(domain, seed, epsilon, count_share, upper):
    rows = some_rows()
    result = dp_release.release(
        rows, domain, epsilon=epsilon, count_share=count_share,
        sales_clamp=(0.0, upper), seed=seed,
    )
    exact = dp_release.exact_aggregates(rows, domain, (0.0, upper))
    expected = {
        "release_count": math.sqrt(2) * 1.0 / (epsilon * count_share),
        "global_sales": math.sqrt(2) * upper / (epsilon * (1 - count_share)),
    }
    for column, std in expected.items():
        noise = noise_of(result, exact, column)
        assert len(noise) == 21_000
        assert abs(noise.std() / std - 1) < STD_TOLERANCE, (column, noise.std(), std)
        assert abs(noise.mean()) < 5 * std / math.sqrt(len(noise)), (column, noise.mean())
        assert result.metadata["queries"][column]["noise_std"] == pytest.approx(std)


def test_budget_and_bounds_are_recorded(domain):
    result = dp_release.release(
        some_rows(), domain, epsilon=0.8, count_share=0.25, sales_clamp=(0.0, 4.0)
    )
    meta = result.metadata
    count, sales = meta["queries"]["release_count"], meta["queries"]["global_sales"]
    # OpenDP's privacy map certifies what each query spends; it may round up.
    assert count["epsilon"] == pytest.approx(0.2, rel=1e-9) and count["epsilon"] >= 0.2
    assert sales["epsilon"] == pytest.approx(0.6, rel=1e-9) and sales["epsilon"] >= 0.6
    assert meta["epsilon_total"] == pytest.approx(0.8, rel=1e-9)
    assert (count["sensitivity"], sales["sensitivity"]) == (1.0, 4.0)
    assert (count["laplace_scale"], sales["laplace_scale"]) == pytest.approx((5.0, 4.0 / 0.6))
    assert meta["clamping"]["global_sales"] == {"lower": 0.0, "upper": 4.0}
    assert count["mechanism"] == sales["mechanism"] == "Laplace"
    assert meta["seed"] is None and "OpenDP" in meta["noise_source"]
    assert meta["domain"]["cells"] == len(domain)
    assert meta["created_at"].endswith("+00:00")


def test_same_seed_reproduces_and_another_does_not(domain):
    first = dp_release.release(some_rows(), domain, seed=2024)
    again = dp_release.release(some_rows(), domain, seed=2024)
    other = dp_release.release(some_rows(), domain, seed=2025)
    pd.testing.assert_frame_equal(first.table, again.table)
    assert first.metadata["seed"] == 2024
    assert "seeded" in first.metadata["noise_source"]
    for column in ("release_count", "global_sales"):
        assert (first.table[column] != other.table[column]).all()


def test_unseeded_releases_differ(domain):
    first = dp_release.release(some_rows(), domain)
    second = dp_release.release(some_rows(), domain)
    assert (first.table["release_count"] != second.table["release_count"]).all()


@pytest.mark.parametrize("seed", [None, 5], ids=["opendp", "seeded"])
def test_public_table_never_equals_the_exact_one(domain, seed):
    rows = some_rows()
    exact = dp_release.exact_aggregates(rows, domain, dp_release.DEFAULT_SALES_CLAMP)
    result = dp_release.release(rows, domain, epsilon=50.0, seed=seed)
    pd.testing.assert_frame_equal(
        result.table[dp_release.CELL_COLUMNS], exact[dp_release.CELL_COLUMNS]
    )
    for column in ("release_count", "global_sales"):
        assert (result.table[column] != exact[column]).all(), column


def test_exact_aggregates_clamp_and_keep_every_cell():
    platforms = pd.DataFrame({"platform_code": ["P0", "P1", "P2", "P3"], "launch_year": [None] * 4})
    domain = dp_release.domain_from(["G0", "G1", "G2"], platforms, [1990, 2000])
    exact = dp_release.exact_aggregates(some_rows(), domain, (0.0, 10.0)).set_index(
        dp_release.CELL_COLUMNS
    )
    assert len(exact) == 3 * 4 * 3
    assert exact.loc[("G0", "P0", "1990")].tolist() == [2.0, 11.5]  # 82.74 clamped to 10
    assert exact.loc[("G2", "P2", "unknown")].tolist() == [1.0, 3.0]
    assert exact.loc[("G1", "P0", "2000")].tolist() == [0.0, 0.0]
    # G3 is not in this domain: its release is not counted anywhere.
    assert exact["release_count"].sum() == 4


def test_public_domain_comes_from_reference_seeds():
    domain = dp_release.public_domain(load_settings(), last_year=2020)
    cells = set(map(tuple, domain.to_numpy()))
    assert domain["genre"].nunique() == 12 and domain["platform"].nunique() == 34
    assert set(domain["decade"]) == {"1980", "1990", "2000", "2010", "2020", "unknown"}
    assert ("Sports", "Wii", "2000") in cells and ("Sports", "Wii", "1990") not in cells
    assert ("Action", "PC", "1980") in cells  # launch year unknown: every decade
    assert ("Action", "NES", "1980") in cells  # launched 1983, inside the 1980s
    assert ("Puzzle", "PS4", "unknown") in cells
    assert not domain.duplicated().any()


@pytest.mark.parametrize(
    ("epsilon", "count_share", "clamp"),
    [(0.0, 0.5, (0, 10)), (-1.0, 0.5, (0, 10)), (math.inf, 0.5, (0, 10)),
     (1.0, 1.0, (0, 10)), (1.0, 0.5, (5, 5)), (1.0, 0.5, (-1, 10)), (1.0, 0.5, (0, math.inf))],
)
def test_parameters_without_privacy_or_answer_are_refused(epsilon, count_share, clamp):
    with pytest.raises(ValueError, match="must"):
        dp_release.release(
            some_rows(), wide_domain(), epsilon=epsilon, count_share=count_share,
            sales_clamp=clamp,
        )


def test_write_release_gives_csv_and_json(tmp_path, domain):
    result = dp_release.release(some_rows(), domain, epsilon=1.0, seed=3)
    csv_path, json_path = dp_release.write_release(result, tmp_path / "dp")
    table = pd.read_csv(csv_path, dtype={"decade": str})
    assert list(table.columns) == [*dp_release.CELL_COLUMNS, "release_count", "global_sales"]
    assert np.allclose(table["global_sales"], result.table["global_sales"], rtol=0, atol=1e-12)
    meta = json.loads(json_path.read_text())
    assert meta["seed"] == 3 and meta["epsilon_total"] == pytest.approx(1.0)
    assert json_path.stem == csv_path.stem == dp_release.TABLE_NAME
