"""The numbers behind the report's research questions, from release frames.

Pure pandas on the frame `ml.reporting.data.read_marts` gives (one row per
accepted release with platform, manufacturer, genre, year, decade and the
regional sales), so each answer is testable on a handful of rows.

Shares across decades (or years) only mean something where the period holds
enough releases: periods below `MIN_RELEASES` (the 2020s hold a handful of
titles in this data) are left out of comparisons and said to be.
"""

from __future__ import annotations

import pandas as pd

from ml.reporting.charts import REGION_LABELS, REGIONS

MIN_RELEASES = 50


def comparable_decades(releases: pd.DataFrame) -> list[int]:
    """Decades with at least MIN_RELEASES releases, in order."""
    counts = releases["decade"].dropna().astype(int).value_counts()
    return sorted(int(d) for d in counts[counts >= MIN_RELEASES].index)


def _in_decades(releases: pd.DataFrame) -> pd.DataFrame:
    known = releases.dropna(subset=["decade"])
    known = known.assign(decade=known["decade"].astype(int))
    return known[known["decade"].isin(comparable_decades(releases))]


def region_share_by_decade(releases: pd.DataFrame) -> pd.DataFrame:
    """Per decade: each region's share (%) of that decade's sales, and total sales."""
    sums = _in_decades(releases).groupby("decade")[REGIONS].sum()
    shares = sums.div(sums.sum(axis=1), axis=0) * 100
    shares.columns = [f"{REGION_LABELS[r]} %" for r in REGIONS]
    shares["sales, millions"] = sums.sum(axis=1)
    shares.index = [f"{d}s" for d in shares.index]
    return shares.rename_axis("decade").reset_index()


def share_within_region_decade(releases: pd.DataFrame, by: str) -> pd.DataFrame:
    """Share (%) of each value of `by` in each (region, decade)'s sales.

    Rows are the values of `by`; columns are `<region> <decade>s`, so one
    heatmap shows how the mix of genres (or makers) differs by region and
    shifts across decades.
    """
    known = _in_decades(releases)
    sums = known.groupby(["decade", by], observed=True)[REGIONS].sum()
    totals = known.groupby("decade")[REGIONS].sum()
    shares = sums.div(totals, level="decade") * 100
    table = shares.unstack("decade").fillna(0.0)
    table.columns = [f"{REGION_LABELS[r].split()[0]} {d}s" for r, d in table.columns]
    return table.loc[table.sum(axis=1).sort_values(ascending=False).index]


def leaders_by_region_decade(releases: pd.DataFrame) -> pd.DataFrame:
    """Per decade and region: the top genre and top platform with their share."""
    known = _in_decades(releases)
    rows = []
    for decade, group in known.groupby("decade"):
        for region in REGIONS:
            total = group[region].sum()
            row = {"decade": f"{decade}s", "region": REGION_LABELS[region],
                   "sales, millions": total}
            for by in ("genre", "platform"):
                sums = group.groupby(by, observed=True)[region].sum()
                row[f"top {by}"] = sums.idxmax()
                row[f"{by} share %"] = 100 * sums.max() / total if total else 0.0
            rows.append(row)
    return pd.DataFrame(rows)


def dated_before_launch(releases: pd.DataFrame) -> pd.DataFrame:
    """Releases whose year is before their platform's launch: dbt flags them
    (`is_year_before_platform_launch`) and its test
    `accepted_year_not_before_platform_launch` warns about them."""
    return releases[releases["is_year_before_platform_launch"]]


def platform_lifecycles(releases: pd.DataFrame, top: int = 15) -> pd.DataFrame:
    """First, peak and last release year of the `top` platforms by releases.

    Releases `dated_before_launch` are left out: a first year before the
    platform existed would stretch its lifecycle by decades.
    """
    trusted = releases[~releases["is_year_before_platform_launch"]]
    known = trusted.dropna(subset=["year"]).assign(year=lambda f: f["year"].astype(int))
    per_year = known.groupby(["platform", "year"], observed=True).size()
    rows = []
    for platform, counts in per_year.groupby(level="platform"):
        years = counts.index.get_level_values("year")
        rows.append({
            "platform": platform,
            "releases": int(counts.sum()),
            "first year": int(years.min()),
            "peak year": int(years[counts.to_numpy().argmax()]),
            "peak-year releases": int(counts.max()),
            "last year": int(years.max()),
            "global sales, millions": known.loc[known.platform == platform, "global_sales"].sum(),
        })
    table = pd.DataFrame(rows).nlargest(top, "releases")
    table["years active"] = table["last year"] - table["first year"] + 1
    return table.reset_index(drop=True)


def genre_share_by_decade(releases: pd.DataFrame, measure: str = "releases") -> pd.DataFrame:
    """Each genre's share (%) of a decade's releases (or global sales), genres as rows,
    with the change between the first and last comparable decade."""
    known = _in_decades(releases)
    if measure == "releases":
        sums = known.groupby(["genre", "decade"], observed=True).size().unstack("decade")
    else:
        sums = known.groupby(["genre", "decade"], observed=True)["global_sales"].sum().unstack("decade")
    shares = (sums.fillna(0) / sums.fillna(0).sum()) * 100
    first, last = shares.columns.min(), shares.columns.max()
    shares.columns = [f"{d}s %" for d in shares.columns]
    shares["change, points"] = shares[f"{last}s %"] - shares[f"{first}s %"]
    return shares.sort_values("change, points", ascending=False).reset_index()


def yearly_releases(releases: pd.DataFrame, by: str, top: int) -> pd.DataFrame:
    """Releases per year (rows) of the `top` values of `by` by releases (columns)."""
    known = releases.dropna(subset=["year"]).assign(year=lambda f: f["year"].astype(int))
    leaders = known[by].value_counts().nlargest(top).index
    table = (
        known[known[by].isin(leaders)]
        .groupby(["year", by], observed=True).size().unstack(by).fillna(0)
    )
    return table[list(leaders)]


def yearly_share(releases: pd.DataFrame, by: str) -> pd.DataFrame:
    """Share (%) of each value of `by` in each year's releases (years with 50+ releases)."""
    known = releases.dropna(subset=["year"]).assign(year=lambda f: f["year"].astype(int))
    counts = known.groupby(["year", by], observed=True).size().unstack(by).fillna(0)
    counts = counts[counts.sum(axis=1) >= MIN_RELEASES]
    return counts.div(counts.sum(axis=1), axis=0) * 100
