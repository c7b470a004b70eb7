{{ config(
    materialized='table',
    indexes=[{'columns': ['release_id'], 'primary': true}],
) }}

{#-
    Point-in-time history of each accepted release (docs block
    point_in_time_features): what a forecaster could have known at the start
    of the release year. Histories are summed per (group, year) first, so the
    window "all earlier rows" covers exactly the strictly earlier years; rows
    of the same year never see each other. Releases of unknown year have no
    provable past: prior counts 0, prior means null. Publishers are grouped
    by their canonical publisher (the lineage), series by series_id, the
    key's integer stand-in.
    A table for the same reason as int_releases__accepted.
-#}
with

releases as (

    select * from {{ ref('int_releases__accepted') }}

),

publisher_years as (

    select
        canonical_publisher_id,
        release_year,
        count(*) as titles,
        sum(log_global_sales) as sum_log_sales

    from releases
    where release_year is not null
    group by canonical_publisher_id, release_year

),

publisher_history as (

    select
        canonical_publisher_id,
        release_year,
        sum(titles) over earlier_years as prior_titles,
        sum(sum_log_sales) over earlier_years as prior_sum_log_sales

    from publisher_years
    window earlier_years as (
        partition by canonical_publisher_id
        order by release_year
        rows between unbounded preceding and 1 preceding
    )

),

series_years as (

    select
        {{ series_id('series_key') }} as series_id,
        release_year,
        count(*) as titles,
        sum(log_global_sales) as sum_log_sales

    from releases
    where release_year is not null
    group by series_id, release_year

),

series_history as (

    select
        series_id,
        release_year,
        sum(titles) over earlier_years as prior_titles,
        sum(sum_log_sales) over earlier_years as prior_sum_log_sales

    from series_years
    window earlier_years as (
        partition by series_id
        order by release_year
        rows between unbounded preceding and 1 preceding
    )

),

platform_years as (

    select
        platform_id,
        release_year,
        count(*) as titles

    from releases
    where release_year is not null
    group by platform_id, release_year

),

title_platforms as (

    select
        game_id,
        count(distinct platform_id) as platform_count

    from releases
    group by game_id

)

select
    releases.release_id,
    coalesce(publisher_history.prior_titles, 0) as publisher_prior_titles,
    publisher_history.prior_sum_log_sales
    / nullif(publisher_history.prior_titles, 0)
        as publisher_prior_mean_log_sales,
    coalesce(series_history.prior_titles, 0) as series_prior_titles,
    series_history.prior_sum_log_sales
    / nullif(series_history.prior_titles, 0)
        as series_prior_mean_log_sales,
    platform_years.titles as platform_titles_that_year,
    case
        when releases.release_year is not null
            then coalesce(platform_prior_years.titles, 0)
    end as platform_titles_prior_year,
    title_platforms.platform_count as title_platform_count

from releases
left join publisher_history
    on
        releases.canonical_publisher_id
        = publisher_history.canonical_publisher_id
        and releases.release_year = publisher_history.release_year
left join series_history
    on
        {{ series_id('releases.series_key') }} = series_history.series_id
        and releases.release_year = series_history.release_year
left join platform_years
    on
        releases.platform_id = platform_years.platform_id
        and releases.release_year = platform_years.release_year
left join platform_years as platform_prior_years
    on
        releases.platform_id = platform_prior_years.platform_id
        and releases.release_year - 1 = platform_prior_years.release_year
left join title_platforms
    on releases.game_id = title_platforms.game_id
