"""What was known about a release before it came out: the one Python definition.

The mart computes the history of every past release in SQL
(`int_releases__prior_performance`, the `series_key` macro); serving and the
backtest compute the same features in Python, here, for releases the mart
does not hold (a future title, or a backtest row whose history must stop at
the origin). `tests/integration/test_point_in_time.py` proves both agree on
every row and title of the real file.

A history is read *as of* a year: only releases of strictly earlier years
count. For a mart row the as-of year is its own year; for a backtest row it is
the origin; for a forecast it is the year after the data's last complete year
(or the requested year, if earlier).

- `publisher_prior_titles` / `series_prior_titles`: releases of the publisher
  (of the series) before the as-of year; 0 when there were none, which is a
  count, not a stand-in for "unknown". Their `*_prior_mean_log_sales`: mean
  ln(1 + global sales) of those releases, missing when there were none.
- `platform_titles_prior_year`: releases on the platform in the year before
  the as-of year (the platform's recent catalogue, known at that time).
- Platform attributes come from the platform reference (the `ref_platforms`
  seed): manufacturer, kind, generation and `platform_age_years`, the release
  year minus the launch year. They are known for a platform that has no
  release in the data yet.
- `title_platform_count` is part of the question (the platforms the title
  ships on); it is never looked up, and missing when not given.

A request's publisher and platform are resolved through the name reference
(`ml.modeling.names`) before they are looked up, as the warehouse resolves
them before it groups histories: "Sony Interactive Entertainment" gets
Sony Computer Entertainment's history.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ml.modeling.names import NameReference, collation_key

# Features this module computes; the other features are the request's own.
HISTORY = (
    "publisher_prior_titles",
    "publisher_prior_mean_log_sales",
    "series_prior_titles",
    "series_prior_mean_log_sales",
    "platform_titles_prior_year",
)
PLATFORM_ATTRIBUTES = (
    "platform_manufacturer",
    "platform_kind",
    "platform_generation",
    "platform_age_years",
)
LOOKED_UP = (*HISTORY, *PLATFORM_ATTRIBUTES)
# Columns of the mart a history is built from (and all a logged table keeps).
MART_COLUMNS = ("series_key", "publisher", "platform", "year", "log_global_sales")
# Columns of the platform reference (`dim_platform`, or the seed itself).
PLATFORM_COLUMNS = ("platform_code", "manufacturer", "generation", "platform_kind", "launch_year")
# The registered version's tag holding the platform reference it serves with.
PLATFORM_REFERENCE_TAG = "platform_reference"
# A year is complete when it holds at least this share of the busiest year's
# releases: the file was scraped late in its last year, and a few titles of
# the following years were announced but had not sold yet.
COMPLETE_YEAR_SHARE = 0.05
# How many years past the last complete year a forecast is made: the
# horizons the backtest measures (`ml.modeling.backtest`). A later year is
# refused, never answered from a tree that cannot place it.
HORIZON_YEARS = 3

_REMARK = re.compile(r"\s*\([^)]*\)\s*$")
_SPACES = re.compile(r"\s+")
_NUMBERING = re.compile(r"(\s+([0-9]+|[ivxlc]+))+\s*$")


def series_key(name: str) -> str:
    """The franchise key of a title, as dbt's `series_key` macro computes it.

    Lowercase, a trailing "(...)" remark removed, cut at the first ':' then
    at the first ' - ', spaces collapsed, trailing numbers and roman numerals
    removed, trimmed to 200 characters.
    """
    text = _REMARK.sub("", name.lower(), count=1)
    text = text.split(":", 1)[0].split(" - ", 1)[0]
    text = _SPACES.sub(" ", text)
    return _NUMBERING.sub("", text, count=1).strip(" ")[:200]


def series_group(key: str) -> str:
    """What MariaDB compares when it joins on `series_key`.

    The column's collation (utf8mb4_unicode_ci) ignores case, accents and
    trailing spaces, so "Pokémon Stadium" and "Pokemon Stadium" share a
    history in the mart; grouping on this key gives Python the same groups.
    """
    return collation_key(key)


def last_complete_year(years: pd.Series) -> int | None:
    """The latest year whose releases reach COMPLETE_YEAR_SHARE of the busiest year's."""
    return last_complete_year_of_counts(years.dropna().astype("int64").value_counts())


def last_complete_year_of_counts(releases_per_year: pd.Series) -> int | None:
    """As `last_complete_year`, from releases counted per year (index: year)."""
    if releases_per_year.empty:
        return None
    complete = releases_per_year[releases_per_year >= COMPLETE_YEAR_SHARE * releases_per_year.max()]
    return int(complete.index.max())


class PointInTime:
    """As-of lookups over labelled releases and the platform reference;
    `names` resolves a request's publisher and platform first."""

    def __init__(
        self, releases: pd.DataFrame, platforms: pd.DataFrame, names: NameReference | None = None
    ) -> None:
        missing = [c for c in MART_COLUMNS if c not in releases.columns]
        missing += [c for c in PLATFORM_COLUMNS if c not in platforms.columns]
        if missing:
            raise ValueError(f"point-in-time lookups need column(s) {', '.join(missing)}")
        dated = releases.loc[releases["year"].notna(), list(MART_COLUMNS)].copy()
        dated["year"] = dated["year"].astype("int64")
        for column in ("series_key", "publisher", "platform"):
            dated[column] = dated[column].astype(str)
        dated["series_key"] = dated["series_key"].map(series_group)
        self.names = names if names is not None else NameReference(())
        self.last_year = int(dated["year"].max()) if len(dated) else None
        self.last_complete_year = last_complete_year(dated["year"])
        self._publisher = _Cumulative(dated, "publisher")
        self._series = _Cumulative(dated, "series_key")
        self._platform_year = dated.groupby(["platform", "year"]).size().to_dict()
        reference = platforms.loc[:, list(PLATFORM_COLUMNS)].copy()
        reference["platform_code"] = reference["platform_code"].astype(str)
        self.platforms = {
            row.platform_code: {
                "platform_manufacturer": _text(row.manufacturer),
                "platform_kind": _text(row.platform_kind),
                "platform_generation": _number(row.generation),
                "launch_year": _number(row.launch_year),
            }
            for row in reference.itertuples(index=False)
        }

    def history(self, rows: pd.DataFrame, as_of: pd.Series | np.ndarray | int) -> pd.DataFrame:
        """HISTORY and PLATFORM_ATTRIBUTES of `rows` as of `as_of` (one year, or one per row).

        `rows` needs publisher, platform, year and series_key. Rows whose
        as-of year is missing (a release of unknown year) have no provable
        past: counts 0, means and the platform catalogue missing, as in the mart.
        """
        frame = rows.reset_index(drop=True)
        platforms = frame["platform"].astype(str).tolist()
        out = self._history(
            frame["publisher"].astype(str).tolist(), platforms,
            frame["series_key"].astype(str).tolist(),
            np.broadcast_to(np.asarray(as_of, dtype="float64"), (len(frame),)),
        )
        attributes = [self.platform_attributes(p, y) for p, y in zip(platforms, frame["year"].tolist())]
        for column in PLATFORM_ATTRIBUTES:
            out[column] = [row[column] for row in attributes]
        return pd.DataFrame(out, index=frame.index)

    def _history(self, publishers: list[str], platforms: list[str], series_keys: list[str],
                 when: np.ndarray) -> dict[str, np.ndarray]:
        """HISTORY's columns for rows given column-wise (plain lists, so a
        single forecast builds no DataFrame)."""
        out: dict[str, np.ndarray] = {}
        for prefix, table, keys in (
            ("publisher", self._publisher, publishers),
            ("series", self._series, [series_group(k) for k in series_keys]),
        ):
            titles, sums = table.as_of(keys, when)
            out[f"{prefix}_prior_titles"] = titles
            out[f"{prefix}_prior_mean_log_sales"] = np.where(titles > 0, sums / np.where(titles > 0, titles, 1), np.nan)
        out["platform_titles_prior_year"] = np.array([
            np.nan if np.isnan(w) else float(self._platform_year.get((p, int(w) - 1), 0))
            for p, w in zip(platforms, when)
        ], dtype="float64")
        return out

    def platform_attributes(
        self, platform: str, year: object, given: Mapping[str, object] | None = None
    ) -> dict[str, object]:
        """Reference attributes of `platform` in `year`; `given` ones (a
        platform the reference does not know) win over missing ones."""
        known = dict(self.platforms.get(platform, {}))
        for name, value in (given or {}).items():
            if value is not None and known.get(name) is None:
                known[name] = value
        launch = known.get("launch_year")
        age = None if launch is None or _missing(year) else float(float(year) - float(launch))
        return {
            "platform_manufacturer": known.get("platform_manufacturer"),
            "platform_kind": known.get("platform_kind"),
            "platform_generation": known.get("platform_generation"),
            "platform_age_years": age,
        }

    def has_releases(self, kind: str, value: str) -> bool:
        """Whether the data holds a dated release of this publisher (or series key)."""
        table = self._publisher if kind == "publisher" else self._series
        return (value if kind == "publisher" else series_group(value)) in table.codes

    @property
    def last_forecast_year(self) -> int | None:
        """The last year a forecast is made for (HORIZON_YEARS past the data)."""
        return None if self.last_complete_year is None else self.last_complete_year + HORIZON_YEARS

    def forecast_as_of(self, year: int) -> int:
        """The as-of year of a forecast for `year`: nothing after the last complete year."""
        if self.last_complete_year is None:
            return year
        return min(year, self.last_complete_year + 1)

    def complete(self, record: Mapping[str, object]) -> dict[str, object]:
        """A forecast request completed into model features.

        Reads `year`, `platform`, `publisher`, optional `name` (its series
        history), `platforms` (title_platform_count) and platform attributes
        for a platform the reference lacks (`platform_manufacturer`,
        `platform_kind`, `platform_generation`, `platform_launch_year`).
        Values the request gives for a looked-up feature are kept.
        """
        return self.complete_many([record])[0]

    def complete_many(self, records: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
        """`complete` of each record, with one history lookup for them all
        (a per-record lookup costs a pandas merge each: seconds per thousand)."""
        records = [self._resolved(record) for record in records]
        keys = [series_key(str(r["name"])) if r.get("name") else None for r in records]
        years = [int(r["year"]) for r in records]
        # Platform attributes are not looked up here: `_completed` reads them
        # with the request's own for a platform the reference lacks.
        columns = self._history(
            [str(r["publisher"]) for r in records], [str(r["platform"]) for r in records],
            [key if key is not None else "" for key in keys],
            np.array([self.forecast_as_of(year) for year in years], dtype="float64"),
        )
        return [
            _completed(self, record, key, {name: _native(values[i]) for name, values in columns.items()})
            for i, (record, key) in enumerate(zip(records, keys))
        ]

    def _resolved(self, record: Mapping[str, object]) -> Mapping[str, object]:
        """`record` with its publisher and platform as the data files them."""
        changed = {}
        for field in ("publisher", "platform"):
            value = str(record[field])
            canonical = self.names.canonical(field, value)
            if canonical != value:
                changed[field] = canonical
        return {**record, **changed} if changed else record


def _completed(history: PointInTime, record: Mapping[str, object], key: str | None,
               found: dict[str, object]) -> dict[str, object]:
    """One request's features: its own values, then what `found` looked up."""
    out = {k: v for k, v in record.items() if k not in ("name", "platforms", "platform_launch_year")}
    if key is None:
        found["series_prior_titles"] = None
        found["series_prior_mean_log_sales"] = None
    given = {n: record.get(n) for n in PLATFORM_ATTRIBUTES[:3]}
    given["launch_year"] = record.get("platform_launch_year")
    found.update(history.platform_attributes(str(record["platform"]), int(record["year"]), given))
    platforms = record.get("platforms")
    if platforms and out.get("title_platform_count") is None:
        out["title_platform_count"] = float(len({str(p) for p in [*platforms, record["platform"]]}))
    for column in LOOKED_UP:
        if out.get(column) is None:
            value = found.get(column)
            out[column] = None if _missing(value) else value
    return out


def with_history(frame: pd.DataFrame, history: PointInTime, as_of: int) -> pd.DataFrame:
    """`frame` with its looked-up features replaced by those known at `as_of`."""
    looked_up = history.history(frame, as_of)
    out = frame.reset_index(drop=True).copy()
    for column in LOOKED_UP:
        out[column] = looked_up[column].to_numpy()
    return out


def platforms_of(frame: pd.DataFrame) -> pd.DataFrame:
    """A platform reference recovered from mart rows (their attributes and age),
    for callers without the warehouse's `dim_platform`."""
    rows = frame.dropna(subset=["platform"]).copy()
    launch = (rows["year"] - rows["platform_age_years"]).astype("Float64")
    rows = rows.assign(launch_year=launch)
    grouped = rows.groupby("platform", observed=True).agg(
        manufacturer=("platform_manufacturer", "first"),
        generation=("platform_generation", "first"),
        platform_kind=("platform_kind", "first"),
        launch_year=("launch_year", "min"),
    )
    return grouped.reset_index().rename(columns={"platform": "platform_code"})


def reference_to_json(platforms: pd.DataFrame) -> str:
    """The platform reference as compact JSON: code -> [maker, kind, generation, launch]."""
    table = {
        str(row.platform_code): [
            _text(row.manufacturer), _text(row.platform_kind),
            _number(row.generation), _number(row.launch_year),
        ]
        for row in platforms.loc[:, list(PLATFORM_COLUMNS)].itertuples(index=False)
    }
    return json.dumps(table, sort_keys=True, separators=(",", ":"))


def reference_from_json(text: str) -> pd.DataFrame:
    """The platform reference back from `reference_to_json`."""
    rows = [
        {"platform_code": code, "manufacturer": maker, "platform_kind": kind,
         "generation": generation, "launch_year": launch}
        for code, (maker, kind, generation, launch) in json.loads(text).items()
    ]
    return pd.DataFrame(rows, columns=list(PLATFORM_COLUMNS))


class _Cumulative:
    """Per key, its releases and summed log sales up to each year, as sorted
    arrays: an as-of lookup is one binary search (numpy's), so a single
    forecast costs microseconds and a mart-sized frame one vectorised call."""

    # Years are packed as `code * _STRIDE + year` so one sorted array holds every key.
    _STRIDE = 1 << 16

    def __init__(self, frame: pd.DataFrame, key: str) -> None:
        per_year = (
            frame.groupby([key, "year"])["log_global_sales"].agg(["size", "sum"]).reset_index()
            .sort_values([key, "year"])
        )
        keys = per_year[key].to_numpy()
        self.codes = {k: code for code, k in enumerate(pd.unique(keys))}
        self._code = np.array([self.codes[k] for k in keys], dtype="int64")
        self._stamp = self._code * self._STRIDE + per_year["year"].to_numpy("int64")
        self._titles = per_year.groupby(key)["size"].cumsum().to_numpy("float64")
        self._sums = per_year.groupby(key)["sum"].cumsum().to_numpy("float64")

    def as_of(self, keys: Sequence[str], when: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative titles and sums of each key over years strictly before `when`."""
        if not len(self._stamp):
            return np.zeros(len(keys)), np.zeros(len(keys))
        code = np.array([self.codes.get(k, -1) for k in keys], dtype="int64")
        last = np.clip(np.nan_to_num(when - 1, nan=-1), -1, self._STRIDE - 1).astype("int64")
        position = np.searchsorted(self._stamp, code * self._STRIDE + last, side="right") - 1
        safe = np.clip(position, 0, None)
        found = (code >= 0) & ~np.isnan(when) & (position >= 0) & (self._code[safe] == code)
        return np.where(found, self._titles[safe], 0.0), np.where(found, self._sums[safe], 0.0)


def _native(value: object) -> object:
    """A numpy scalar as the Python value a JSON answer carries."""
    return value.item() if isinstance(value, np.generic) else value


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _text(value: object) -> str | None:
    return None if _missing(value) else str(value)


def _number(value: object) -> float | None:
    return None if _missing(value) else float(value)
