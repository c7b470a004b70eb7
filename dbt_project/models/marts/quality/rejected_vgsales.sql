{{ config(indexes=[{'columns': ['reason_code']}]) }}

{#- The quarantine: every raw row that did not reach fct_sales, and why. -#}
with

validated as (

    select * from {{ ref('int_releases__validated') }}
    where not is_accepted

)

select
    sales_rank,
    game_name,
    platform_code,
    year_raw,
    genre_name,
    publisher_raw,
    na_sales,
    eu_sales,
    jp_sales,
    other_sales,
    global_sales,
    reason_code,
    reason_codes

from validated
