with

source as (

    select * from {{ ref('vgsales') }}

),

renamed as (

    select
        rank as sales_rank,
        name as game_name,
        platform as platform_code,
        year as year_raw,
        genre as genre_name,
        publisher as publisher_raw,
        na_sales,
        eu_sales,
        jp_sales,
        other_sales,
        global_sales

    from source

),

typed as (

    select
        *,
        case
            when year_raw regexp '^[0-9]{4}$' then cast(year_raw as signed)
        end as release_year,
        case
            when publisher_raw not in ('N/A', 'Unknown') then publisher_raw
        end as publisher_name,
        global_sales - (na_sales + eu_sales + jp_sales + other_sales)
            as sales_sum_gap

    from renamed

),

flagged as (

    select
        *,
        coalesce(year_raw, 'N/A') = 'N/A' as is_year_unknown,
        coalesce(year_raw, 'N/A') <> 'N/A'
        and not coalesce(
            release_year
            between {{ var('min_release_year') }} and {{ current_year() }},
            false
        ) as is_year_invalid,
        publisher_name is null as is_publisher_unknown,
        coalesce({{ name_is_valid('game_name') }}, false) as is_name_valid,
        coalesce(
            least(na_sales, eu_sales, jp_sales, other_sales, global_sales) < 0,
            false
        ) as has_negative_sales,
        coalesce(
            abs(sales_sum_gap) > {{ var('sales_sum_flag_tolerance') }}, false
        ) as is_sales_sum_mismatch,
        coalesce(
            abs(sales_sum_gap) > {{ var('sales_sum_reject_tolerance') }}, false
        ) as is_sales_sum_inconsistent,
        sales_rank is null
        or game_name is null
        or platform_code is null
        or genre_name is null
        or na_sales is null
        or eu_sales is null
        or jp_sales is null
        or other_sales is null
        or global_sales is null as is_missing_required

    from typed

)

select * from flagged
