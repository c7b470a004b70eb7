{#-
    What each load changed, from the history snapshot `snap_release_sales`:
    one row per release version that a load opened or closed. `added` is a
    release first seen in that load, `revised` a release whose sales or
    attributes changed (with the previous figures), `removed` a release the
    load no longer had.
-#}
with

history as (

    select * from {{ ref('snap_release_sales') }}

),

ordered as (

    select
        *,
        lag(global_sales) over per_release as previous_global_sales,
        lag(dbt_valid_from) over per_release as previous_valid_from,
        row_number() over per_release as version_number

    from history
    window per_release as (
        partition by release_id order by dbt_valid_from
    )

),

changes as (

    select
        release_id,
        game_name,
        platform_code,
        release_year,
        case when version_number = 1 then 'added' else 'revised' end
            as change_kind,
        dbt_valid_from as changed_at,
        load_file_sha256,
        previous_global_sales,
        global_sales

    from ordered
    union all
    select
        release_id,
        game_name,
        platform_code,
        release_year,
        'removed' as change_kind,
        dbt_valid_to as changed_at,
        null as load_file_sha256,
        global_sales as previous_global_sales,
        null as global_sales

    from history
    where
        dbt_valid_to is not null
        and not exists (
            select 1 as later_version
            from history as later
            where
                later.release_id = history.release_id
                and later.dbt_valid_from = history.dbt_valid_to
        )

)

select
    release_id,
    game_name,
    platform_code,
    release_year,
    change_kind,
    changed_at,
    load_file_sha256,
    previous_global_sales,
    global_sales,
    global_sales - previous_global_sales as global_sales_change

from changes
