{{ config(indexes=[
    {'columns': ['release_id'], 'primary': true},
    {'columns': ['game_id']},
    {'columns': ['platform_id']},
    {'columns': ['genre_id']},
    {'columns': ['publisher_id']},
    {'columns': ['year_id']},
]) }}

with

releases as (

    select * from {{ ref('int_releases__accepted') }}

)

select
    release_id,
    game_id,
    platform_id,
    genre_id,
    publisher_id,
    year_id,
    sales_rank,
    na_sales,
    eu_sales,
    jp_sales,
    other_sales,
    global_sales,
    sales_sum_gap,
    is_sales_sum_mismatch,
    is_year_before_platform_launch

from releases
