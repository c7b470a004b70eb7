{#-
    Nothing is silently dropped: every raw row lands in exactly one of
    fct_sales and rejected_vgsales. Compares, per Rank, how many raw rows
    there are with how many landed (so a row counted twice or lost shows up
    even when Ranks repeat), plus the total row count and global sales.
-#}
with

raw_rows as (

    select
        rank as sales_rank,
        global_sales
    from {{ ref('vgsales') }}

),

landed as (

    select
        sales_rank,
        global_sales
    from {{ ref('fct_sales') }}
    union all
    select
        sales_rank,
        global_sales
    from {{ ref('rejected_vgsales') }}

),

raw_per_rank as (

    select
        coalesce(sales_rank, -1) as sales_rank,
        count(*) as raw_rows
    from raw_rows
    group by coalesce(sales_rank, -1)

),

landed_per_rank as (

    select
        coalesce(sales_rank, -1) as sales_rank,
        count(*) as landed_rows
    from landed
    group by coalesce(sales_rank, -1)

),

per_rank as (

    select
        raw_per_rank.sales_rank,
        raw_per_rank.raw_rows,
        coalesce(landed_per_rank.landed_rows, 0) as landed_rows
    from raw_per_rank
    left join landed_per_rank
        on raw_per_rank.sales_rank = landed_per_rank.sales_rank
    union all
    select
        landed_per_rank.sales_rank,
        0 as raw_rows,
        landed_per_rank.landed_rows
    from landed_per_rank
    left join raw_per_rank
        on landed_per_rank.sales_rank = raw_per_rank.sales_rank
    where raw_per_rank.sales_rank is null

),

raw_totals as (

    select
        count(*) as n_rows,
        coalesce(sum(global_sales), 0) as global_sales
    from raw_rows

),

landed_totals as (

    select
        count(*) as n_rows,
        coalesce(sum(global_sales), 0) as global_sales
    from landed

),

totals as (

    select
        'total' as check_name,
        raw_totals.n_rows as raw_value,
        landed_totals.n_rows as landed_value
    from raw_totals cross join landed_totals
    union all
    select
        'global_sales' as check_name,
        raw_totals.global_sales as raw_value,
        landed_totals.global_sales as landed_value
    from raw_totals cross join landed_totals

)

select
    concat('rank ', sales_rank) as check_name,
    raw_rows as raw_value,
    landed_rows as landed_value
from per_rank
where raw_rows <> landed_rows
union all
select
    check_name,
    raw_value,
    landed_value
from totals
where abs(raw_value - landed_value) > 0.001
