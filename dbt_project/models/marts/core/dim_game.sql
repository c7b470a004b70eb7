{{ config(indexes=[{'columns': ['game_id'], 'primary': true}]) }}

with

releases as (

    select * from {{ ref('int_releases__accepted') }}

),

known as (

    -- game_id is the md5 of the exact name, so each group has one name
    -- and one series key; grouping by the integer alone spares the sort
    -- of two long text keys.
    select
        game_id,
        min(game_name) as game_name,
        min(series_key) as series_key,
        count(distinct platform_id) as platform_count,
        count(*) as release_count,
        min(release_year) as first_release_year,
        false as is_unknown

    from releases
    group by game_id

),

unknown_member as (

    select
        -1 as game_id,
        'Unknown' as game_name,
        'unknown' as series_key,
        0 as platform_count,
        0 as release_count,
        null as first_release_year,
        true as is_unknown

)

select * from known
union all
select * from unknown_member
