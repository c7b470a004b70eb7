"""Differentially private release of sales aggregates by genre x platform x decade.

The original design's essay recommends differential privacy before statistics
leave the team. This module publishes, for every cell of a public grid of
genre x platform x decade, the number of releases and their summed global
sales, each with Laplace noise calibrated and drawn by OpenDP.

Privacy accounting (neighbouring data sets differ by adding or removing one
release):

- A release falls in exactly one cell, so each query over all cells is one
  histogram whose L1 sensitivity is what one release can move one cell by; it
  costs its epsilon once (parallel composition over disjoint cells).
- The count query has L1 sensitivity 1.
- The sales query clamps each release's global sales to [lower, upper]
  (default [0, 10] million) before summing; its sensitivity is
  max(|lower|, |upper|). Clamping is the trade-off: the few blockbusters above
  the bound (Wii Sports sold 82.7 million; 62 of 16,598 raw rows exceed 10)
  are counted as `upper`, which biases the sums of their cells down, while a
  larger bound adds proportionally more noise to every cell, including the
  many small ones. At epsilon 1 split evenly, the sales noise has scale 20
  (standard deviation about 28 million) per cell, and a genre's total over its
  ~140 cells about 340 million: on this data the counts are usable and the
  sales sums are coarse; a tighter clamp or a larger epsilon buys accuracy.
- The two queries compose sequentially: the total is their sum, `--epsilon`,
  split by `--count-share` (default half each). The epsilon recorded per query
  is the one OpenDP's privacy map certifies for the stated sensitivity.

The grid comes from public reference data only (the committed genre and
platform seeds, and the decades the warehouse accepts), never from the data:
a cell that exists only because a release does would itself leak. Cells for a
decade that ends before the platform's launch are left out, and a release
dated there (the warehouse flags but keeps those) is not counted. Empty cells
are published with noise like any other.

Reproducibility: OpenDP draws its noise from the operating system's secure
randomness and cannot be seeded, so a release without `--seed` (the default,
and the one to publish) cannot be reproduced. With `--seed`, the same OpenDP
calibration (scale and certified epsilon) is used but the Laplace noise comes
from NumPy's seeded PCG64 generator, so the same seed and data give the same
table; that mode is for tests and audits. Whoever holds the seed can subtract
the noise, so the metadata JSON is the data owner's record: publish the CSV,
and the JSON only without its `seed` field.

CLI: `python -m ml.reporting.dp_release --epsilon 1.0 --out reports/dp/` writes
`dp_sales_by_genre_platform_decade.csv` and `.json` there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import opendp.prelude as dp
import pandas as pd
import sqlalchemy as sa
import yaml

from ml.settings import Settings, load_settings
from ml.warehouse import engine as warehouse

TABLE_NAME = "dp_sales_by_genre_platform_decade"
DEFAULT_EPSILON = 1.0
DEFAULT_COUNT_SHARE = 0.5
DEFAULT_SALES_CLAMP = (0.0, 10.0)
CELL_COLUMNS = ["genre", "platform", "decade"]
# Unknown years stay in the warehouse (decade null); they get their own cells.
UNKNOWN_DECADE = "unknown"


@dataclass(frozen=True)
class DpRelease:
    """A noisy table (one row per public cell) and the record of how it was made."""

    table: pd.DataFrame
    metadata: dict


def public_domain(settings: Settings, last_year: int | None = None) -> pd.DataFrame:
    """The public grid of cells: genre x platform x decade, plus unknown decade.

    Genres and platforms come from the committed reference seeds (the warehouse
    rejects releases outside them), decades from dbt's `min_release_year` to
    `last_year` (default: this year, the warehouse's own upper bound).
    """
    project = settings.dbt_project_dir
    genres = pd.read_csv(project / "seeds" / "ref_genres.csv")["genre_name"]
    platforms = pd.read_csv(project / "seeds" / "ref_platforms.csv")
    first_year = yaml.safe_load((project / "dbt_project.yml").read_text())["vars"][
        "min_release_year"
    ]
    last_year = last_year or dt.date.today().year
    decades = range(first_year // 10 * 10, last_year // 10 * 10 + 1, 10)
    return domain_from(genres, platforms, decades)


def domain_from(genres, platforms: pd.DataFrame, decades) -> pd.DataFrame:
    """Cells for these genres, platforms (`platform_code`, `launch_year`) and decades.

    A (platform, decade) pair is kept when the decade ends in or after the
    platform's launch year (or the launch year is unknown, as for PC).
    """
    cells = []
    for platform in platforms.itertuples():
        launch = platform.launch_year
        for decade in decades:
            if pd.isna(launch) or decade + 9 >= launch:
                cells.append((platform.platform_code, str(decade)))
        cells.append((platform.platform_code, UNKNOWN_DECADE))
    pairs = pd.DataFrame(cells, columns=["platform", "decade"])
    grid = pd.DataFrame({"genre": list(genres)}).merge(pairs, how="cross")
    return grid[CELL_COLUMNS].astype(str)


def exact_aggregates(
    rows: pd.DataFrame, domain: pd.DataFrame, sales_clamp: tuple[float, float]
) -> pd.DataFrame:
    """Per cell of `domain`: release count and clamped global sales sum (exact).

    `rows` has one row per release with genre, platform, decade (nullable
    number) and global_sales. Rows outside the domain are not counted; cells
    without rows get zeros.
    """
    lower, upper = sales_clamp
    keyed = pd.DataFrame(
        {
            "genre": rows["genre"].astype(str),
            "platform": rows["platform"].astype(str),
            "decade": decade_labels(rows["decade"]),
            "sales": rows["global_sales"].astype(float).clip(lower, upper),
        }
    )
    sums = keyed.groupby(CELL_COLUMNS).agg(
        release_count=("sales", "size"), global_sales=("sales", "sum")
    )
    table = domain.merge(sums.reset_index(), on=CELL_COLUMNS, how="left")
    return table.fillna({"release_count": 0, "global_sales": 0.0}).astype(
        {"release_count": float, "global_sales": float}
    )


def decade_labels(decades: pd.Series) -> pd.Series:
    """Decades as the domain's text labels, null as `unknown`."""
    numbers = pd.to_numeric(decades, errors="coerce").astype("Int64")
    return numbers.astype(str).where(numbers.notna(), UNKNOWN_DECADE)


@dataclass(frozen=True)
class NoisyQuery:
    """One query's noisy answers and how they were made."""

    values: np.ndarray
    epsilon: float
    scale: float


def laplace_query(
    exact: np.ndarray,
    *,
    epsilon: float,
    sensitivity: float,
    rng: np.random.Generator | None = None,
) -> NoisyQuery:
    """`exact` (one value per cell) plus Laplace noise of scale sensitivity / epsilon.

    OpenDP's vector Laplace measurement certifies the epsilon spent for an L1
    sensitivity of `sensitivity`; its noise (standard deviation sqrt(2) *
    scale) is drawn from secure OS randomness, or, when `rng` is given, from
    that seeded generator in cell order so a release can be reproduced.
    """
    scale = sensitivity / epsilon
    dp.enable_features("contrib")
    measurement = dp.m.make_laplace(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)),
        dp.l1_distance(T=float),
        scale=scale,
    )
    exact = np.asarray(exact, dtype=float)
    if rng is None:
        noisy = np.array(measurement(exact.tolist()))
    else:
        noisy = exact + rng.laplace(0.0, scale, size=exact.shape)
    return NoisyQuery(values=noisy, epsilon=measurement.map(sensitivity), scale=scale)


def release(
    rows: pd.DataFrame,
    domain: pd.DataFrame,
    *,
    epsilon: float = DEFAULT_EPSILON,
    count_share: float = DEFAULT_COUNT_SHARE,
    sales_clamp: tuple[float, float] = DEFAULT_SALES_CLAMP,
    seed: int | None = None,
) -> DpRelease:
    """The DP table of counts and clamped sales sums over `domain`, with its record.

    `epsilon` is the total budget; the count query gets `count_share` of it and
    the sales query the rest. With `seed`, the noise is reproducible (see the
    module docstring); without, it is OpenDP's.
    """
    check_parameters(epsilon, count_share, sales_clamp)
    rng = None if seed is None else np.random.default_rng(seed)
    exact = exact_aggregates(rows, domain, sales_clamp)
    queries = {
        "release_count": {
            "description": "number of releases in the cell",
            "epsilon_requested": epsilon * count_share,
            "sensitivity": 1.0,
        },
        "global_sales": {
            "description": "sum of global sales in millions, each release "
            f"clamped to [{sales_clamp[0]}, {sales_clamp[1]}]",
            "epsilon_requested": epsilon * (1 - count_share),
            "sensitivity": max(abs(sales_clamp[0]), abs(sales_clamp[1])),
        },
    }
    table = exact[CELL_COLUMNS].copy()
    for column, query in queries.items():
        noisy = laplace_query(
            exact[column].to_numpy(),
            epsilon=query["epsilon_requested"],
            sensitivity=query["sensitivity"],
            rng=rng,
        )
        table[column] = noisy.values
        query.update(
            epsilon=noisy.epsilon,
            mechanism="Laplace",
            laplace_scale=noisy.scale,
            noise_std=math.sqrt(2) * noisy.scale,
        )
    metadata = {
        "table": TABLE_NAME,
        "library": f"opendp {version('opendp')}",
        "noise_source": "OpenDP, secure OS randomness"
        if rng is None
        else "NumPy PCG64 seeded (reproducible; calibration by OpenDP)",
        "neighbouring": "add or remove one release",
        "epsilon_total": sum(q["epsilon"] for q in queries.values()),
        "delta": 0.0,
        "composition": "sequential over the two queries; parallel over the "
        "disjoint cells of each",
        "queries": queries,
        "clamping": {
            "global_sales": {"lower": sales_clamp[0], "upper": sales_clamp[1]},
            "note": "releases selling more than the upper bound count as the "
            "bound: sums of cells holding blockbusters are biased down; a "
            "larger bound means proportionally more noise in every cell",
        },
        "domain": {
            "cells": len(domain),
            "genres": sorted(domain["genre"].unique()),
            "platforms": sorted(domain["platform"].unique()),
            "decades": sorted(domain["decade"].unique()),
            "source": "committed reference seeds and the accepted year range; "
            "never the data",
        },
        "seed": seed,
        "seed_note": "with a seed the noise can be recomputed: keep this "
        "field private, publish the CSV",
        "post_processing": "none: values are unbiased and may be negative",
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return DpRelease(table=table, metadata=metadata)


def check_parameters(
    epsilon: float, count_share: float, sales_clamp: tuple[float, float]
) -> None:
    """Reject budgets and bounds that would give no privacy or no answer."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a finite number > 0, found {epsilon}")
    if not 0 < count_share < 1:
        raise ValueError(f"count share must be strictly between 0 and 1, found {count_share}")
    lower, upper = sales_clamp
    if not (0 <= lower < upper and math.isfinite(upper)):
        raise ValueError(
            f"sales clamp must satisfy 0 <= lower < upper < inf, found [{lower}, {upper}]"
        )


def read_release_rows(settings: Settings) -> pd.DataFrame:
    """One row per accepted release (genre, platform, decade, global_sales), reader user."""
    with warehouse.connect(settings) as connection:
        return pd.read_sql(
            sa.text(
                "select genre, platform, decade, global_sales "
                "from ml_release_features"
            ),
            connection,
        )


def write_release(result: DpRelease, out_dir: Path) -> tuple[Path, Path]:
    """Write the table as CSV and its metadata as JSON into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / f"{TABLE_NAME}.csv"
    json_path = out_dir / f"{TABLE_NAME}.json"
    result.table.to_csv(csv_path, index=False)
    json_path.write_text(json.dumps(result.metadata, indent=2) + "\n")
    return csv_path, json_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilon", type=float, default=DEFAULT_EPSILON,
                        help="total privacy budget (default %(default)s)")
    parser.add_argument("--count-share", type=float, default=DEFAULT_COUNT_SHARE,
                        help="share of epsilon spent on counts (default %(default)s)")
    parser.add_argument("--sales-clamp", type=float, nargs=2, metavar=("LOWER", "UPPER"),
                        default=DEFAULT_SALES_CLAMP,
                        help="per-release global sales bounds, millions (default 0 10)")
    parser.add_argument("--seed", type=int, default=None,
                        help="reproducible noise from this seed, for tests and audits "
                        "(default: OpenDP's secure, unseeded noise)")
    parser.add_argument("--out", type=Path, default=Path("reports/dp"),
                        help="output folder (default %(default)s)")
    args = parser.parse_args(argv)
    settings = load_settings()
    rows = read_release_rows(settings)
    result = release(
        rows,
        public_domain(settings),
        epsilon=args.epsilon,
        count_share=args.count_share,
        sales_clamp=tuple(args.sales_clamp),
        seed=args.seed,
    )
    csv_path, json_path = write_release(result, args.out)
    print(
        f"[dp-release] {len(result.table)} cells from {len(rows)} releases, "
        f"epsilon {result.metadata['epsilon_total']:g}: {csv_path}, {json_path}"
    )


if __name__ == "__main__":
    main()
