{#-
    Recomputes every point-in-time feature of ml_release_features from
    fct_sales and the dimensions, and returns each release where a value
    differs. Independent of how the mart computes them (per-year totals of
    int_releases__accepted, then a window over the years): here each release
    counts the releases of its canonical publisher, and of its series, in
    strictly earlier calendar years, one release at a time (a RANGE frame
    ending a year before its own). It also fails when a release of unknown
    year has any history (none can be proven earlier). Series are matched
    by series_id, the key's integer stand-in with the key's own equality.
    One pass over the join, materialised once for both windows: a self-join
    of per-year totals read the join five times (a minute at 1M rows).
-#}
with

features as (

    select * from {{ ref('ml_release_features') }}

),

releases as (

    select
        fct.release_id,
        publishers.canonical_publisher_id as publisher_id,
        {{ series_id('game.series_key') }} as series_id,
        years.calendar_year,
        case
            when years.calendar_year is not null then ln(1 + fct.global_sales)
        end as dated_log_sales

    -- fct_sales read in order, the dimensions looked up by key: `+ 0`
    -- keeps MariaDB from walking fct_sales through its game_id or year_id
    -- index instead (one random read per release).
    from {{ ref('fct_sales') }} as fct
    inner join {{ ref('dim_game') }} as game
        on fct.game_id + 0 = game.game_id
    inner join {{ ref('dim_year') }} as years
        on fct.year_id + 0 = years.year_id
    inner join {{ ref('dim_publisher') }} as publishers
        on fct.publisher_id + 0 = publishers.publisher_id

),

expected as (

    -- Releases of unknown year count in no frame (count and sum skip their
    -- nulls) and are given no history below.
    select
        release_id,
        calendar_year,
        count(dated_log_sales) over publisher_earlier as publisher_prior_titles,
        sum(dated_log_sales) over publisher_earlier as publisher_prior_sum,
        count(dated_log_sales) over series_earlier as series_prior_titles,
        sum(dated_log_sales) over series_earlier as series_prior_sum

    from releases
    window
        publisher_earlier as (
            partition by publisher_id
            order by calendar_year
            range between unbounded preceding and 1 preceding
        ),
        series_earlier as (
            partition by series_id
            order by calendar_year
            range between unbounded preceding and 1 preceding
        )

),

compared as (

    select
        features.release_id,
        features.year,
        features.publisher_prior_titles,
        features.publisher_prior_mean_log_sales,
        features.series_prior_titles,
        features.series_prior_mean_log_sales,
        case
            when expected.calendar_year is not null
                then expected.publisher_prior_titles
            else 0
        end as expected_publisher_prior_titles,
        case
            when expected.calendar_year is not null
                then
                    expected.publisher_prior_sum
                    / nullif(expected.publisher_prior_titles, 0)
        end as expected_publisher_prior_mean,
        case
            when expected.calendar_year is not null
                then expected.series_prior_titles
            else 0
        end as expected_series_prior_titles,
        case
            when expected.calendar_year is not null
                then
                    expected.series_prior_sum
                    / nullif(expected.series_prior_titles, 0)
        end as expected_series_prior_mean

    from features
    inner join expected
        on features.release_id = expected.release_id

)

select *
from compared
where
    publisher_prior_titles <> expected_publisher_prior_titles
    or series_prior_titles <> expected_series_prior_titles
    or not coalesce(
        abs(publisher_prior_mean_log_sales - expected_publisher_prior_mean)
        < 0.000001,
        publisher_prior_mean_log_sales <=> expected_publisher_prior_mean
    )
    or not coalesce(
        abs(series_prior_mean_log_sales - expected_series_prior_mean)
        < 0.000001,
        series_prior_mean_log_sales <=> expected_series_prior_mean
    )
