{{ config(
    materialized='table',
    indexes=[{'columns': ['is_accepted', 'sales_rank']}],
) }}

{#-
    Every raw row once, with the business decision about it: accepted, or
    rejected with the first failing reason in priority order (docs block
    reason_codes). Duplicates are judged only among rows that pass every
    other rule, so a bad first copy never hides a good second one.
    A table, not a view like the rest of this layer: the accepted releases,
    the quarantine and about a dozen tests read it, and as a view each of
    them re-ran the regex checks and both window functions over the whole
    raw file (about four minutes per test at a million rows).
-#}
with

releases as (

    select * from {{ ref('stg_vgsales__releases') }}

),

platforms as (

    select * from {{ ref('int_platforms__recognised') }}

),

genres as (

    select * from {{ ref('ref_genres') }}

),

checked as (

    select
        releases.*,
        platforms.platform_code as known_platform_code,
        genres.genre_name as known_genre_name,
        platforms.platform_code is not null as is_platform_known,
        genres.genre_name is not null as is_genre_known,
        releases.release_year < platforms.launch_year
            as is_year_before_platform_launch,
        case
            when releases.is_missing_required then 'missing_required'
            when not releases.is_name_valid then 'invalid_name'
            when releases.is_year_invalid then 'invalid_year'
            when releases.has_negative_sales then 'negative_sales'
            when releases.is_sales_sum_inconsistent
                then 'sales_sum_inconsistent'
            when platforms.platform_code is null then 'unknown_platform'
            when genres.genre_name is null then 'unknown_genre'
        end as rule_reason_code,
        concat_ws(
            ',',
            case when releases.is_missing_required then 'missing_required' end,
            case when not releases.is_name_valid then 'invalid_name' end,
            case when releases.is_year_invalid then 'invalid_year' end,
            case when releases.has_negative_sales then 'negative_sales' end,
            case
                when releases.is_sales_sum_inconsistent
                    then 'sales_sum_inconsistent'
            end,
            case
                when platforms.platform_code is null then 'unknown_platform'
            end,
            case when genres.genre_name is null then 'unknown_genre' end
        ) as rule_reason_codes

    from releases
    left join platforms
        on releases.platform_code = platforms.platform_code
    left join genres
        on releases.genre_name = genres.genre_name

),

ranked as (

    select
        *,
        case
            when rule_reason_code is null
                then row_number() over (
                    partition by
                        rule_reason_code is null,
                        game_name,
                        platform_code,
                        coalesce(release_year, -1)
                    order by
                        sales_rank asc,
                        global_sales desc,
                        publisher_raw asc
                )
        end as release_copy_number,
        case
            when rule_reason_code is null
                then row_number() over (
                    partition by rule_reason_code is null, sales_rank
                    order by game_name, platform_code, year_raw
                )
        end as rank_copy_number

    from checked

),

decided as (

    select
        *,
        case
            when rule_reason_code is not null then rule_reason_code
            when release_copy_number > 1 then 'duplicate_release'
            when rank_copy_number > 1 then 'duplicate_rank'
        end as reason_code

    from ranked

)

select
    *,
    reason_code is null as is_accepted,
    nullif(
        concat_ws(
            ',',
            nullif(rule_reason_codes, ''),
            case when release_copy_number > 1 then 'duplicate_release' end,
            case when rank_copy_number > 1 then 'duplicate_rank' end
        ),
        ''
    ) as reason_codes

from decided
