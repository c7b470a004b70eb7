{#-
    Recomputes every point-in-time feature of ml_release_features from
    fct_sales and the dimensions by joining each release to the per-year
    totals of its publisher and series restricted to `year < this year`, and
    returns each release where a value differs. Independent of the window
    functions the mart uses; it also fails when a release of unknown year has
    any history (none can be proven earlier). Publishers are matched by
    their canonical publisher (dim_publisher, the lineage), series by
    series_id, the key's integer stand-in with the key's own equality.
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
        ln(1 + fct.global_sales) as log_global_sales

    -- fct_sales read in order, the dimensions looked up by key: `+ 0`
    -- keeps MariaDB from walking fct_sales through its game_id or year_id
    -- index instead (one random read per release), in each of the five
    -- passes over this join.
    from {{ ref('fct_sales') }} as fct
    inner join {{ ref('dim_game') }} as game
        on fct.game_id + 0 = game.game_id
    inner join {{ ref('dim_year') }} as years
        on fct.year_id + 0 = years.year_id
    inner join {{ ref('dim_publisher') }} as publishers
        on fct.publisher_id + 0 = publishers.publisher_id

),

publisher_years as (

    select
        publisher_id,
        calendar_year,
        count(*) as titles,
        sum(log_global_sales) as sum_log_sales

    from releases
    group by publisher_id, calendar_year

),

series_years as (

    select
        series_id,
        calendar_year,
        count(*) as titles,
        sum(log_global_sales) as sum_log_sales

    from releases
    group by series_id, calendar_year

),

expected_publisher as (

    select
        this_year.publisher_id,
        this_year.calendar_year,
        coalesce(sum(earlier.titles), 0) as prior_titles,
        sum(earlier.sum_log_sales) / sum(earlier.titles) as prior_mean

    from publisher_years as this_year
    left join publisher_years as earlier
        on
            this_year.publisher_id = earlier.publisher_id
            and this_year.calendar_year > earlier.calendar_year
    group by this_year.publisher_id, this_year.calendar_year

),

expected_series as (

    select
        this_year.series_id,
        this_year.calendar_year,
        coalesce(sum(earlier.titles), 0) as prior_titles,
        sum(earlier.sum_log_sales) / sum(earlier.titles) as prior_mean

    from series_years as this_year
    left join series_years as earlier
        on
            this_year.series_id = earlier.series_id
            and this_year.calendar_year > earlier.calendar_year
    group by this_year.series_id, this_year.calendar_year

),

compared as (

    select
        features.release_id,
        features.year,
        features.publisher_prior_titles,
        features.publisher_prior_mean_log_sales,
        features.series_prior_titles,
        features.series_prior_mean_log_sales,
        coalesce(publisher.prior_titles, 0) as expected_publisher_prior_titles,
        publisher.prior_mean as expected_publisher_prior_mean,
        coalesce(series.prior_titles, 0) as expected_series_prior_titles,
        series.prior_mean as expected_series_prior_mean

    from features
    inner join releases
        on features.release_id = releases.release_id
    left join expected_publisher as publisher
        on
            releases.publisher_id = publisher.publisher_id
            and releases.calendar_year = publisher.calendar_year
    left join expected_series as series
        on
            releases.series_id = series.series_id
            and releases.calendar_year = series.calendar_year

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
