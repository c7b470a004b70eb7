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
-#}
with

history as (

    select * from {{ ref('fct_sales_history') }}

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
        from history
    ) as distinct_loads

),

{% if is_incremental() %}
listed as (

    select coalesce(max(load_number), 0) as last_load_number
    from {{ this }}

),
{% endif %}

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
        where current_load.load_number > (select last_load_number from listed)
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
            and next_load.load_number > (select last_load_number from listed)
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
