{{ config(
    materialized='table',
    indexes=[{'columns': ['release_id'], 'primary': true}],
) }}

{#-
    The accepted releases (one per game x platform x year) with their
    dimension keys and the attributes the marts share. Codes come from the
    reference seeds, so a key computed here always matches its dimension.
    The publisher is kept as filed and as resolved through its lineage
    (docs block written_names): histories and the ML mart use the latter.
    A table, not a view like the rest of this layer: every mart reads it, and
    MariaDB re-evaluated the stacked views with window functions in each join
    (the ML mart took 13 minutes instead of seconds).
-#}
with

validated as (

    select * from {{ ref('int_releases__validated') }}
    where is_accepted

),

publisher_names as (

    select * from {{ ref('int_names__written') }}
    where name_field = 'publisher'

),

resolved as (

    select
        validated.*,
        coalesce(
            publisher_names.canonical_name, validated.publisher_name
        ) as canonical_publisher_name

    from validated
    left join publisher_names
        on validated.publisher_name = publisher_names.written_name

),

keyed as (

    select
        md5(concat_ws(
            '|',
            game_name,
            known_platform_code,
            coalesce(release_year, 'unknown')
        )) as release_id,
        sales_rank,
        game_name,
        known_platform_code as platform_code,
        known_genre_name as genre_name,
        coalesce(publisher_name, 'Unknown') as publisher_name,
        coalesce(canonical_publisher_name, 'Unknown')
            as canonical_publisher_name,
        release_year,
        floor(release_year / 10) * 10 as release_decade,
        {{ series_key('game_name') }} as series_key,
        na_sales,
        eu_sales,
        jp_sales,
        other_sales,
        global_sales,
        ln(1 + global_sales) as log_global_sales,
        sales_sum_gap,
        is_sales_sum_mismatch,
        is_year_unknown,
        is_publisher_unknown,
        coalesce(is_year_before_platform_launch, false)
            as is_year_before_platform_launch,
        {{ surrogate_key('game_name') }} as game_id,
        {{ surrogate_key('known_platform_code') }} as platform_id,
        {{ surrogate_key('known_genre_name') }} as genre_id,
        case
            when is_publisher_unknown then -1
            else {{ surrogate_key('publisher_name') }}
        end as publisher_id,
        case
            when is_publisher_unknown then -1
            else {{ surrogate_key('canonical_publisher_name') }}
        end as canonical_publisher_id,
        coalesce(release_year, -1) as year_id

    from resolved

)

select * from keyed
