{#-
    Nothing is silently dropped: every raw row lands in exactly one of
    fct_sales and rejected_vgsales. Compares, per Rank, how many raw rows
    there are with how many landed (so a row counted twice or lost shows up
    even when Ranks repeat), plus the total row count and global sales.
    The three relations are read in one union, grouped by Rank, and the
    totals summed from those groups: the former query grouped each side
    separately and read each several times.
-#}
with

rows_by_side as (

    select
        rank as sales_rank,
        1 as raw_rows,
        0 as landed_rows,
        global_sales as raw_global_sales,
        null as landed_global_sales
    from {{ ref('vgsales') }}
    union all
    select
        sales_rank,
        0 as raw_rows,
        1 as landed_rows,
        null as raw_global_sales,
        global_sales as landed_global_sales
    from {{ ref('fct_sales') }}
    union all
    select
        sales_rank,
        0 as raw_rows,
        1 as landed_rows,
        null as raw_global_sales,
        global_sales as landed_global_sales
    from {{ ref('rejected_vgsales') }}

),

per_rank as (

    select
        coalesce(sales_rank, -1) as sales_rank,
        sum(raw_rows) as raw_rows,
        sum(landed_rows) as landed_rows,
        sum(raw_global_sales) as raw_global_sales,
        sum(landed_global_sales) as landed_global_sales
    from rows_by_side
    group by coalesce(sales_rank, -1)

),

checks as (

    select 'total' as check_name
    union all
    select 'global_sales' as check_name

),

totals as (

    select
        checks.check_name,
        case checks.check_name
            when 'total' then sum(per_rank.raw_rows)
            else coalesce(sum(per_rank.raw_global_sales), 0)
        end as raw_value,
        case checks.check_name
            when 'total' then sum(per_rank.landed_rows)
            else coalesce(sum(per_rank.landed_global_sales), 0)
        end as landed_value
    from per_rank
    cross join checks
    group by checks.check_name

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
