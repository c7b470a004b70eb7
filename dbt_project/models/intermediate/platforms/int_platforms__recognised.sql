{{ config(
    materialized='table',
    indexes=[{'columns': ['platform_code']}],
) }}

{#-
    Every platform a release may be accepted on (docs block
    new_platform_rule): the reference seed, plus codes missing from it that
    look like a genuinely new platform in the loaded file, with unknown
    reference attributes. Everything else stays `unknown_platform` in the
    quarantine.
    A table, not a view like the rest of this layer: validation, the
    platform dimension, the ML mart and six tests read it, and as a view
    each read scanned the whole raw file again.
-#}
with

reference as (

    select * from {{ ref('ref_platforms') }}

),

releases as (

    select * from {{ ref('stg_vgsales__releases') }}

),

raw_total as (

    select count(*) as raw_rows
    from releases

),

candidates as (

    select
        releases.platform_code,
        count(*) as release_rows

    from releases
    left join reference
        on releases.platform_code = reference.platform_code
    where
        reference.platform_code is null
        and releases.platform_code
        regexp {{ sql_literal(var('new_platform_pattern')) }}
        and not releases.is_missing_required
        and releases.is_name_valid
        and not releases.is_year_invalid
        and not releases.has_negative_sales
        and not releases.is_sales_sum_inconsistent
    group by releases.platform_code

),

discovered as (

    select
        candidates.platform_code,
        candidates.release_rows

    from candidates
    cross join raw_total
    where
        candidates.release_rows >= {{ var('new_platform_min_rows') }}
        and candidates.release_rows
        >= {{ var('new_platform_min_share') }} * raw_total.raw_rows

)

select
    platform_code,
    platform_name,
    manufacturer,
    generation,
    platform_kind,
    launch_year,
    true as is_in_reference,
    null as discovered_rows

from reference

union all

select
    platform_code,
    platform_code as platform_name,
    'Unknown' as manufacturer,
    null as generation,
    'unknown' as platform_kind,
    null as launch_year,
    false as is_in_reference,
    release_rows as discovered_rows

from discovered
