{{ config(indexes=[{'columns': ['year_id'], 'primary': true}]) }}

{#-
    One row per calendar year from min_release_year to the current year, plus
    the unknown member (-1) that releases with year N/A point to. The console
    generation of a year is the newest generation of home console launched by
    then.
-#}
with recursive

calendar as (

    select {{ var('min_release_year') }} as calendar_year
    union all
    select calendar_year + 1 as calendar_year
    from calendar
    where calendar_year < {{ current_year() }}

),

platforms as (

    select * from {{ ref('ref_platforms') }}

),

known as (

    select
        calendar.calendar_year as year_id,
        calendar.calendar_year,
        floor(calendar.calendar_year / 10) * 10 as decade,
        max(platforms.generation) as console_generation,
        cast(calendar.calendar_year as char(7)) as year_label,
        false as is_unknown

    from calendar
    left join platforms
        on
            platforms.platform_kind = 'home'
            and calendar.calendar_year >= platforms.launch_year
    group by calendar.calendar_year

),

unknown_member as (

    select
        -1 as year_id,
        null as calendar_year,
        null as decade,
        null as console_generation,
        'unknown' as year_label,
        true as is_unknown

)

select * from known
union all
select * from unknown_member
