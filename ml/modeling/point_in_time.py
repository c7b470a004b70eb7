"""Point-in-time features of a release that has not happened yet.

The mart computes, for each past release, what was known at the start of its
year (`int_releases__prior_performance`): the publisher's releases in strictly
earlier years and their mean log sales, the platform's releases that year and
the platform's age. A forecast request names only platform, genre, publisher
and year; `PointInTime` answers the same questions for it from the mart rows
the model was trained on, with the mart's definitions:

- `publisher_prior_titles`: the publisher's releases with a known year before
  the requested year (0 for a publisher never seen);
  `publisher_prior_mean_log_sales`: their mean `log_global_sales` (None if 0).
- `platform_titles_that_year`: the platform's releases in that year, None
  past the last year of the data (the schedule is not known yet).
- `platform_age_years`: year minus the platform's launch year (None for a
  platform never seen).

Series and title-platform features need the title, which a forecast does not
name: they stay None unless the request gives them, and the pipeline imputes.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

# What this module can fill in; other optional features stay as requested.
LOOKED_UP = (
    "publisher_prior_titles",
    "publisher_prior_mean_log_sales",
    "platform_titles_that_year",
    "platform_age_years",
)
# Columns of the mart this module reads (and all a logged table keeps).
MART_COLUMNS = ("publisher", "platform", "year", "log_global_sales", "platform_age_years")


@dataclass(frozen=True)
class _History:
    """One publisher's releases: sorted years and running totals before each."""

    years: list[int]
    titles_before: list[int]
    log_sales_before: list[float]


class PointInTime:
    """As-of lookups over the releases of a mart frame."""

    def __init__(self, frame: pd.DataFrame) -> None:
        missing = [c for c in MART_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"point-in-time lookups need mart column(s) {', '.join(missing)}")
        dated = frame.loc[frame["year"].notna(), list(MART_COLUMNS)].copy()
        dated["year"] = dated["year"].astype("int64")
        self.last_year = int(dated["year"].max()) if len(dated) else None
        self._publishers = {
            str(publisher): _history(group)
            for publisher, group in dated.groupby("publisher", observed=True)
        }
        self._platform_year = {
            (str(platform), int(year)): int(count)
            for (platform, year), count in dated.groupby(["platform", "year"], observed=True).size().items()
        }
        aged = dated[dated["platform_age_years"].notna()]
        launch = (aged["year"] - aged["platform_age_years"].astype("int64")).groupby(
            aged["platform"], observed=True
        ).min()
        self._launch_year = {str(p): int(y) for p, y in launch.items()}

    @classmethod
    def from_mart(cls, frame: pd.DataFrame) -> PointInTime:
        return cls(frame)

    def complete(self, record: Mapping[str, object]) -> dict[str, object]:
        """`record` with each looked-up feature it leaves empty filled in."""
        out = dict(record)
        year = int(record["year"])
        known = self._lookup(str(record["publisher"]), str(record["platform"]), year)
        for name in LOOKED_UP:
            if out.get(name) is None:
                out[name] = known[name]
        return out

    def _lookup(self, publisher: str, platform: str, year: int) -> dict[str, object]:
        history = self._publishers.get(publisher)
        titles, log_sales = 0, 0.0
        if history is not None:
            k = bisect.bisect_left(history.years, year)
            titles = history.titles_before[k]
            log_sales = history.log_sales_before[k]
        launch = self._launch_year.get(platform)
        scheduled = None
        if self.last_year is not None and year <= self.last_year:
            scheduled = float(self._platform_year.get((platform, year), 0))
        return {
            "publisher_prior_titles": float(titles),
            "publisher_prior_mean_log_sales": log_sales / titles if titles else None,
            "platform_titles_that_year": scheduled,
            "platform_age_years": None if launch is None else float(year - launch),
        }


def _history(group: pd.DataFrame) -> _History:
    per_year = group.groupby("year")["log_global_sales"].agg(["size", "sum"]).sort_index()
    years = [int(y) for y in per_year.index]
    # Totals strictly before years[k] are at [k]; past the last year, all of them.
    titles = np.concatenate(([0], np.cumsum(per_year["size"].to_numpy()))).astype(int).tolist()
    sums = np.concatenate(([0.0], np.cumsum(per_year["sum"].to_numpy(dtype="float64")))).tolist()
    return _History(years, titles, sums)
