"""The datasheet of the data a model version learnt from, read from the marts.

`read_warehouse_facts(settings)` counts what the warehouse holds (reader
user): accepted and quarantined rows, releases per platform, genre, decade
and year, and the platforms known only from the reference seeds.
`datasheet(facts)` turns those counts into a `Document` following the
questions of "Datasheets for Datasets" (Gebru et al.): motivation,
provenance and licence, composition, who is under-represented, collection
and preprocessing, uses, distribution, privacy.

Provenance and licence text states only what is known about the file; the
licence terms themselves are the publisher's to state, so the sheet says
where to read them instead of paraphrasing them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from ml.modeling.point_in_time import COMPLETE_YEAR_SHARE, last_complete_year_of_counts
from ml.data.fetch import EXPECTED_ROWS, EXPECTED_SHA256
from ml.reporting.data import REJECTED_SQL
from ml.reporting.document import Bullets, Document, Table
from ml.settings import Settings
from ml.warehouse import engine as warehouse

DIMENSIONS = ("platform", "genre", "decade")
# A value is under-represented when it holds fewer releases than this
# fraction of an even split of its dimension (total / number of values).
UNDER_REPRESENTED_FRACTION = 0.5
TAIL_YEARS = 6
UNKNOWN_YEAR = "unknown year"


def _members_sql(dimension: str, code: str) -> str:
    """Releases per member of `dim_<dimension>`, unknown member left out; a
    member without a release (a reference platform the data never uses) shows 0."""
    return f"""
        select dim.{code} as value, count(fct.release_id) as releases
        from dim_{dimension} as dim
        left join fct_sales as fct on fct.{dimension}_id = dim.{dimension}_id
        where not dim.is_unknown
        group by dim.{code}
    """


# Releases per value of each dimension.
COUNTS_SQL = {
    "platform": _members_sql("platform", "platform_code"),
    "genre": _members_sql("genre", "genre_name"),
    "decade": f"""
        select coalesce(cast(year.decade as char(4)), '{UNKNOWN_YEAR}') as value,
            count(*) as releases
        from fct_sales as fct
        inner join dim_year as year on fct.year_id = year.year_id
        group by year.decade
    """,
}
YEARS_SQL = """
select year.calendar_year as year, count(*) as releases
from fct_sales as fct
inner join dim_year as year on fct.year_id = year.year_id
where year.calendar_year is not null
group by year.calendar_year
order by year.calendar_year
"""
TOTALS_SQL = """
select
    count(*) as releases,
    coalesce(sum(global_sales), 0) as global_sales,
    min(global_sales) as min_global_sales
from fct_sales
"""


@dataclass(frozen=True)
class WarehouseFacts:
    """What the warehouse of one database holds, as counts."""

    database: str
    releases: int
    global_sales: float
    min_global_sales: float
    rejected: pd.DataFrame
    counts: dict[str, pd.DataFrame]
    years: pd.DataFrame

    @property
    def raw_rows(self) -> int:
        """Rows of the raw file: accepted plus quarantined (dbt reconciles the two)."""
        return self.releases + int(self.rejected.raw_rows.sum())

    def representation(self, dimension: str) -> pd.DataFrame:
        """Releases and share per value of `dimension`, fewest first, with the
        `under_represented` flag; values without a release are left out."""
        counts = self.counts[dimension]
        counts = counts[(counts.releases > 0) & (counts.value != UNKNOWN_YEAR)]
        even = counts.releases.sum() / max(len(counts), 1)
        table = counts.assign(
            share=counts.releases / self.releases,
            under_represented=counts.releases < UNDER_REPRESENTED_FRACTION * even,
        )
        return table.sort_values(["releases", "value"]).reset_index(drop=True)

    def under_represented(self, dimension: str) -> pd.DataFrame:
        table = self.representation(dimension)
        return table[table.under_represented].reset_index(drop=True)

    @property
    def reference_only_platforms(self) -> list[str]:
        """Platforms of the reference seed with no release in the data."""
        counts = self.counts["platform"]
        return sorted(counts.loc[counts.releases == 0, "value"])

    @property
    def unknown_year_releases(self) -> int:
        counts = self.counts["decade"]
        return int(counts.loc[counts.value == UNKNOWN_YEAR, "releases"].sum())

    @property
    def last_year(self) -> int:
        return int(self.years.year.max())

    @property
    def thin_tail(self) -> list[int]:
        """Years after the last complete one (the rule forecasts use:
        `ml.modeling.point_in_time.COMPLETE_YEAR_SHARE` of the busiest year)."""
        last = last_complete_year_of_counts(self.years.set_index("year").releases)
        return [] if last is None else [int(y) for y in self.years.year if y > last]


def read_warehouse_facts(settings: Settings) -> WarehouseFacts:
    """Counts from the marts of `settings.mariadb_database`, reader user."""
    with warehouse.connect(settings) as connection:
        totals = connection.execute(sa.text(TOTALS_SQL)).one()
        rejected = pd.read_sql(sa.text(REJECTED_SQL), connection)
        counts = {
            dimension: pd.read_sql(sa.text(sql), connection)
            for dimension, sql in COUNTS_SQL.items()
        }
        years = pd.read_sql(sa.text(YEARS_SQL), connection)
    if not totals.releases:
        raise ValueError(
            f"fct_sales in database {settings.mariadb_database!r} has no rows; "
            "build the warehouse first (make pipeline)"
        )
    return WarehouseFacts(
        database=settings.mariadb_database,
        releases=int(totals.releases),
        global_sales=float(totals.global_sales),
        min_global_sales=float(totals.min_global_sales),
        rejected=rejected.astype({"raw_rows": "int64"}),
        counts={d: c.astype({"value": str, "releases": "int64"}) for d, c in counts.items()},
        years=years.astype("int64"),
    )


def representation_sentence(facts: WarehouseFacts, dimension: str) -> str:
    """One sentence naming the under-represented values of `dimension` with their rows."""
    few = facts.under_represented(dimension)
    if few.empty:
        return f"No {dimension} is under-represented."
    named = ", ".join(f"{row.value} ({row.releases:,})" for row in few.itertuples())
    return f"Under-represented {dimension}s (releases in the warehouse): {named}."


def representation_table(facts: WarehouseFacts, dimension: str) -> Table:
    table = facts.representation(dimension)
    frame = pd.DataFrame(
        {
            dimension: table.value,
            "releases": table.releases,
            "share": [f"{s:.2%}" for s in table.share],
            "under-represented": ["yes" if u else "" for u in table.under_represented],
        }
    )
    return Table(frame, f"Releases per {dimension}, fewest first")


def representation_rule() -> str:
    return (
        "A value counts as under-represented when it holds fewer than "
        f"{UNDER_REPRESENTED_FRACTION:.0%} of the releases an even split of its dimension "
        "would give it (accepted releases divided by the number of values that have any)."
    )


def provenance_bullets(facts: WarehouseFacts) -> Bullets:
    """Where the data comes from, its licence and attribution: known facts only."""
    return Bullets(
        (
            (
                'Source: the Kaggle dataset "Video Game Sales" (`gregorut/videogamesales`, '
                f"file `vgsales.csv`, {EXPECTED_ROWS:,} rows, sha256 `{EXPECTED_SHA256}`). "
                "Its description says it was scraped from VGChartz (vgchartz.com)."
            ),
            (
                "Attribution: the sales figures are VGChartz's; the collection is the Kaggle "
                "uploader's. Credit both when showing results built on them."
            ),
            (
                "Licence: this project states no licence for the data and grants none. The "
                "terms under which the file may be used or shared are those on its Kaggle page "
                "and, for the figures themselves, VGChartz's terms of use: check both before "
                "publishing or using results commercially."
            ),
            (
                "Distribution: the project never commits or redistributes the file. `make data` "
                "takes the user's own copy (`$VGSALES_CSV`, `../shared/data/vgsales.csv`) or "
                "downloads it from a public mirror, and accepts it only when its checksum "
                "matches the file above. The warehouse, reports and this sheet hold data "
                "derived from it."
            ),
            (
                f"Snapshot: the file is a one-off export; its last release year is "
                f"{facts.last_year}. Nothing in the project updates it from the source."
            ),
        )
    )


def datasheet(facts: WarehouseFacts) -> Document:
    """The datasheet of the warehouse described by `facts`."""
    document = Document(f"Datasheet: vgsales warehouse (database {facts.database})")
    motivation = document.part("Motivation and intended uses")
    motivation.blocks.append(
        "A public table of video game releases and their estimated unit sales, loaded "
        "into a warehouse to answer analytics questions (sales by region, genre, platform "
        "and decade) and to train a pre-release sales forecast. It suits aggregate "
        "questions about the retail history it covers; it does not describe players, "
        "prices, revenue, reviews or marketing."
    )
    document.part("Provenance, licence and attribution").blocks.append(provenance_bullets(facts))

    composition = document.part("Composition")
    quarantined = int(facts.rejected.raw_rows.sum())
    composition.blocks.append(
        f"{facts.raw_rows:,} raw rows: {facts.releases:,} accepted releases (one per title, "
        f"platform and year; {facts.global_sales:,.1f} million units worldwide) and "
        f"{quarantined:,} quarantined in `rejected_vgsales` with a reason. "
        f"{facts.unknown_year_releases:,} accepted releases have no year."
    )
    if quarantined:
        composition.blocks.append(
            Table(
                facts.rejected.rename(columns={"reason_code": "reason"}),
                "Quarantined raw rows by reason",
            )
        )
    composition.blocks.append(
        Table(facts.years.tail(TAIL_YEARS), f"Releases in the last {TAIL_YEARS} years of the data")
    )
    if facts.thin_tail:
        busiest = facts.years.loc[facts.years.releases.idxmax()]
        composition.blocks.append(
            "Incomplete last years: "
            + ", ".join(str(y) for y in facts.thin_tail)
            + f" hold less than {COMPLETE_YEAR_SHARE:.0%} of the busiest year's releases each, "
            "against "
            f"{busiest.releases:,} in {busiest.year}: the file holds few of their releases, "
            "so they describe neither those years' market nor their sales."
        )

    representation = document.part("Who is under-represented")
    representation.blocks.append(representation_rule())
    representation.blocks.append(
        Bullets(tuple(representation_sentence(facts, d) for d in DIMENSIONS))
    )
    if facts.reference_only_platforms:
        representation.blocks.append(
            "Platforms in the reference seed without a single release in the data: "
            + ", ".join(facts.reference_only_platforms)
            + "."
        )
    for dimension in DIMENSIONS:
        representation.blocks.append(representation_table(facts, dimension))

    document.part("Collection and preprocessing").blocks.append(
        Bullets(
            (
                (
                    "The figures are VGChartz's estimates, not audited publisher figures; the "
                    "file does not say how they were estimated or whether digital sales count."
                ),
                (
                    "Only releases VGChartz lists with sales appear (the smallest global figure "
                    f"is {facts.min_global_sales:.2f} million): releases it never listed are "
                    "absent, so the data leans towards titles that sold."
                ),
                (
                    "dbt stages the raw seed (renames, casts, flags), quarantines rows it "
                    "cannot accept (`rejected_vgsales`, with a reason per row) and builds the "
                    "star schema and the ML feature mart; docs/pipeline.md and "
                    "docs/contracts.md describe the rules."
                ),
            )
        )
    )
    document.part("Privacy").blocks.append(privacy_text())
    return document


def privacy_text() -> str:
    """What the data and the project's logs hold about people: nothing personal."""
    return (
        "The data holds no personal data: rows are titles, platforms, genres, publishers "
        "(companies), years and aggregate sales estimates. The API's prediction log keeps "
        "the request's features, the answer, the model version and a request id, and no "
        "client address or user identity."
    )
