"""What the report reads from the warehouse: the star schema and the quarantine.

Everything comes from the marts through the read-only user, never from the
raw CSV, so the report shows exactly what analysts and the models see.
Releases are `fct_sales` joined to their dimensions, one row per accepted
release; the unknown year member gives a null year and decade.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from ml.reporting.charts import REGIONS
from ml.settings import Settings
from ml.warehouse import engine as warehouse

RELEASES_SQL = """
select
    fct.release_id,
    game.game_name as name,
    platform.platform_code as platform,
    platform.manufacturer,
    genre.genre_name as genre,
    publisher.publisher_name as publisher,
    year.calendar_year as year,
    year.decade,
    fct.na_sales,
    fct.eu_sales,
    fct.jp_sales,
    fct.other_sales,
    fct.global_sales,
    fct.is_year_before_platform_launch
from fct_sales as fct
inner join dim_game as game on fct.game_id = game.game_id
inner join dim_platform as platform on fct.platform_id = platform.platform_id
inner join dim_genre as genre on fct.genre_id = genre.genre_id
inner join dim_publisher as publisher on fct.publisher_id = publisher.publisher_id
inner join dim_year as year on fct.year_id = year.year_id
"""

REJECTED_SQL = """
select reason_code, count(*) as raw_rows
from rejected_vgsales
group by reason_code
order by raw_rows desc, reason_code
"""


@dataclass(frozen=True)
class MartData:
    """Accepted releases with their dimensions, and rejected raw rows by reason."""

    releases: pd.DataFrame
    rejected: pd.DataFrame


def typed_releases(frame: pd.DataFrame) -> pd.DataFrame:
    """Sales as float (the driver gives Decimal), year and decade as Int64,
    dbt's flags as bool."""
    sales = [*REGIONS, "global_sales"]
    return frame.astype({**{c: "float64" for c in sales}, "year": "Int64", "decade": "Int64",
                         "is_year_before_platform_launch": "bool"})


def read_marts(settings: Settings) -> MartData:
    """Both frames from the marts of `settings.mariadb_database`, reader user."""
    with warehouse.connect(settings) as connection:
        releases = pd.read_sql(sa.text(RELEASES_SQL), connection)
        rejected = pd.read_sql(sa.text(REJECTED_SQL), connection)
    if releases.empty:
        raise ValueError(
            f"fct_sales in database {settings.mariadb_database!r} has no rows; "
            "build the warehouse first (make pipeline)"
        )
    return MartData(releases=typed_releases(releases), rejected=rejected)
