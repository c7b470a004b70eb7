{{ config(indexes=[{'columns': ['platform_id'], 'primary': true}]) }}

with

platforms as (

    select * from {{ ref('int_platforms__recognised') }}

),

known as (

    select
        {{ surrogate_key('platform_code') }} as platform_id,
        platform_code,
        platform_name,
        manufacturer,
        generation,
        platform_kind,
        launch_year,
        false as is_unknown

    from platforms

),

unknown_member as (

    select
        -1 as platform_id,
        'unknown' as platform_code,
        'Unknown platform' as platform_name,
        'Unknown' as manufacturer,
        null as generation,
        'unknown' as platform_kind,
        null as launch_year,
        true as is_unknown

)

select * from known
union all
select * from unknown_member
