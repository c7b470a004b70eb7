{{ config(indexes=[
    {'columns': ['release_id'], 'primary': true},
    {'columns': ['split_time']},
]) }}

{#-
    One row per accepted release: label, the original design's features and
    point-in-time history (docs/contracts.md). Split columns are
    deterministic: split_random by crc32 of release_id (70/30), split_time by
    the var ml_first_test_year (docs block ml_splits).
-#}
with

releases as (

    select * from {{ ref('int_releases__accepted') }}

),

history as (

    select * from {{ ref('int_releases__prior_performance') }}

),

platforms as (

    select * from {{ ref('int_platforms__recognised') }}

)

select
    releases.release_id,
    releases.game_name as name,
    releases.platform_code as platform,
    releases.genre_name as genre,
    releases.canonical_publisher_name as publisher,
    releases.release_year as year,
    releases.release_decade as decade,
    platforms.manufacturer as platform_manufacturer,
    platforms.platform_kind,
    platforms.generation as platform_generation,
    releases.na_sales,
    releases.eu_sales,
    releases.jp_sales,
    releases.other_sales,
    releases.global_sales,
    releases.log_global_sales,
    history.publisher_prior_titles,
    history.publisher_prior_mean_log_sales,
    releases.series_key,
    history.series_prior_titles,
    history.series_prior_mean_log_sales,
    releases.release_year - platforms.launch_year as platform_age_years,
    history.platform_titles_that_year,
    history.platform_titles_prior_year,
    history.title_platform_count,
    case
        when crc32(releases.release_id) % 100 < 70 then 'train' else 'test'
    end as split_random,
    case
        when releases.release_year >= {{ var('ml_first_test_year') }}
            then 'test'
        when releases.release_year is not null then 'train'
    end as split_time,
    releases.sales_rank,
    releases.is_sales_sum_mismatch,
    releases.is_year_before_platform_launch

from releases
inner join history
    on releases.release_id = history.release_id
inner join platforms
    on releases.platform_code = platforms.platform_code
