{{ config(materialized='incremental') }}

{#-
    What each load changed, from `fct_sales_history` (docs block
    load_history): one row per release that a load added, revised (sales,
    publisher or genre differ from the previous load) or no longer has, with
    the figures before and after.
    Incremental: the history is append-only, so what a past load changed
    never changes; a build compares only the loads after the last one listed
    (none when the file is unchanged) instead of the whole history again.
    A load that changed nothing lists no row and is compared again, to the
    same empty result, until a later load is listed.
    The loads to read (the last one listed and those after it) are looked up
    first and written into the query as literals: MariaDB then reads only
    their rows through the (load_id, release_id) index, and with no new load
    reads none, where a join to the numbered loads made it scan the whole
    history on every build.
-#}
{%- set reread = [] -%}
{%- if is_incremental() and execute -%}
    {%- set found = run_query(
        "select load_id, load_number, (select coalesce(max(listed.load_number), 0)"
        ~ " from " ~ this ~ " as listed) as last_listed"
        ~ " from (select load_id, row_number() over (order by loaded_at) as load_number"
        ~ " from (select distinct load_id, loaded_at from " ~ ref('fct_sales_history')
        ~ ") as distinct_loads) as loads") -%}
    {%- set last_listed = found.columns[2].values()[0] if found.rows else 0 -%}
    {%- for row in found.rows if row[1] >= last_listed -%}
        {%- do reread.append(row[0]) -%}
    {%- endfor -%}
    {#- Only the last listed load again: nothing new to compare. -#}
    {%- if reread | length < 2 and last_listed > 0 -%}
        {%- do reread.clear() -%}
    {%- endif -%}
{%- endif -%}
with

{# Numbered over every load (`loads`); only the rows of `reread` are read. #}
history as (

    select * from {{ ref('fct_sales_history') }}
    {% if is_incremental() %}
        where load_id in (
            {%- for load_id in reread %}
                {{ sql_literal(load_id) }}{{ ',' if not loop.last }}
            {%- else %}
                null
            {%- endfor %}
        )
    {% endif %}

),

loads as (

    select
        load_id,
        loaded_at,
        load_file_sha256,
        row_number() over (order by loaded_at) as load_number

    from (
        select distinct
            load_id,
            loaded_at,
            load_file_sha256
        from {{ ref('fct_sales_history') }}
    ) as distinct_loads

),

paired as (

    select
        current_load.load_number,
        current_load.loaded_at,
        current_load.load_file_sha256,
        current_rows.release_id,
        current_rows.game_name,
        current_rows.platform_code,
        current_rows.release_year,
        previous_rows.global_sales as previous_global_sales,
        current_rows.global_sales,
        case
            when previous_rows.release_id is null then 'added'
            when
                not (
                    current_rows.publisher_name <=> previous_rows.publisher_name
                    and current_rows.genre_name <=> previous_rows.genre_name
                    and current_rows.na_sales <=> previous_rows.na_sales
                    and current_rows.eu_sales <=> previous_rows.eu_sales
                    and current_rows.jp_sales <=> previous_rows.jp_sales
                    and current_rows.other_sales <=> previous_rows.other_sales
                    and current_rows.global_sales <=> previous_rows.global_sales
                )
                then 'revised'
        end as change_kind

    from history as current_rows
    inner join loads as current_load
        on current_rows.load_id = current_load.load_id
    left join loads as previous_load
        on previous_load.load_number = current_load.load_number - 1
    left join history as previous_rows
        on
            current_rows.release_id = previous_rows.release_id
            and previous_load.load_id = previous_rows.load_id
    {% if is_incremental() %}
        where current_load.load_number > (
            select coalesce(max(listed.load_number), 0) as last_load_number
            from {{ this }} as listed
        )
    {% endif %}

),

removed as (

    select
        next_load.load_number,
        next_load.loaded_at,
        next_load.load_file_sha256,
        previous_rows.release_id,
        previous_rows.game_name,
        previous_rows.platform_code,
        previous_rows.release_year,
        previous_rows.global_sales as previous_global_sales,
        null as global_sales,
        'removed' as change_kind

    from history as previous_rows
    inner join loads as previous_load
        on previous_rows.load_id = previous_load.load_id
    inner join loads as next_load
        on next_load.load_number = previous_load.load_number + 1
    left join history as next_rows
        on
            previous_rows.release_id = next_rows.release_id
            and next_load.load_id = next_rows.load_id
    where
        next_rows.release_id is null
        {% if is_incremental() %}
            and next_load.load_number > (
                select coalesce(max(listed.load_number), 0) as last_load_number
                from {{ this }} as listed
            )
        {% endif %}

),

changes as (

    select * from paired
    where change_kind is not null
    union all
    select * from removed

)

select
    load_number,
    loaded_at,
    load_file_sha256,
    release_id,
    game_name,
    platform_code,
    release_year,
    change_kind,
    previous_global_sales,
    global_sales,
    global_sales - previous_global_sales as global_sales_change

from changes
