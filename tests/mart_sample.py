"""A small frame shaped like the `ml_release_features` mart, for ML unit tests.

The real mart needs a dbt build (minutes); the training, evaluation and
registry tests only need its columns and types with a learnable signal, so
this builds one directly. Feature values are drawn, not derived: the point-in-
time logic is dbt's and is tested there. The label depends on publisher,
platform, genre, series history and platform count, so a model that reads
them beats the median, and regional sales add up to global sales within
rounding, as in the real data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.features import MART_DTYPES

PLATFORMS = ("PS2", "PS3", "PS4", "X360", "Wii", "DS", "PC")
GENRES = ("Action", "Sports", "Shooter", "Puzzle", "Role-Playing", "Racing")
PUBLISHERS = tuple(f"Publisher {i:02d}" for i in range(12))
FIRST_TEST_YEAR = 2013


def mart_frame(n_rows: int = 1500, seed: int = 0) -> pd.DataFrame:
    """A deterministic mart-shaped frame with MART_DTYPES column types."""
    rng = np.random.default_rng(seed)
    platform = rng.choice(PLATFORMS, n_rows)
    genre = rng.choice(GENRES, n_rows)
    publisher = rng.choice(PUBLISHERS, n_rows)
    year = rng.integers(1998, 2017, n_rows).astype(float)
    year[rng.random(n_rows) < 0.02] = np.nan  # unknown years, as in the raw data
    platform_effect = dict(zip(PLATFORMS, rng.normal(0, 0.25, len(PLATFORMS))))
    genre_effect = dict(zip(GENRES, rng.normal(0, 0.15, len(GENRES))))
    publisher_effect = dict(zip(PUBLISHERS, rng.normal(0, 0.35, len(PUBLISHERS))))
    series_prior_titles = rng.poisson(0.8, n_rows)
    series_mean = np.where(series_prior_titles > 0, rng.gamma(2.0, 0.2, n_rows), np.nan)
    title_platform_count = rng.integers(1, 5, n_rows)
    log_sales = np.clip(
        0.3
        + np.vectorize(platform_effect.get)(platform)
        + np.vectorize(genre_effect.get)(genre)
        + np.vectorize(publisher_effect.get)(publisher)
        + 0.6 * np.nan_to_num(series_mean)
        + 0.08 * title_platform_count
        + rng.normal(0, 0.12, n_rows),
        0.01,
        None,
    )
    global_cents = np.round(np.expm1(log_sales) * 100)
    shares = rng.dirichlet([4, 3, 2, 1], n_rows)
    regional = np.round(shares * global_cents[:, None]) / 100
    global_sales = global_cents / 100
    release_id = [f"{seed:02d}{i:08x}" for i in range(n_rows)]
    split_time = np.where(year >= FIRST_TEST_YEAR, "test", "train").astype(object)
    split_time[np.isnan(year)] = None
    frame = pd.DataFrame(
        {
            "release_id": release_id,
            "name": [f"Game {i}" for i in range(n_rows)],
            "platform": platform,
            "genre": genre,
            "publisher": publisher,
            "year": year,
            "decade": np.floor(year / 10) * 10,
            "platform_manufacturer": "Maker",
            "platform_kind": "home",
            "platform_generation": 7.0,
            "na_sales": regional[:, 0],
            "eu_sales": regional[:, 1],
            "jp_sales": regional[:, 2],
            "other_sales": regional[:, 3],
            "global_sales": global_sales,
            "log_global_sales": np.log1p(global_sales),
            "publisher_prior_titles": rng.integers(0, 200, n_rows),
            "publisher_prior_mean_log_sales": rng.gamma(2.0, 0.15, n_rows),
            "series_key": [f"series {i % 300}" for i in range(n_rows)],
            "series_prior_titles": series_prior_titles,
            "series_prior_mean_log_sales": series_mean,
            "platform_age_years": rng.integers(0, 10, n_rows).astype(float),
            "platform_titles_that_year": rng.integers(20, 400, n_rows),
            "platform_titles_prior_year": rng.integers(0, 400, n_rows),
            "title_platform_count": title_platform_count,
            "split_random": np.where(rng.random(n_rows) < 0.7, "train", "test"),
            "split_time": split_time,
        }
    )
    return frame.astype(MART_DTYPES)
