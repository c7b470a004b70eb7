{#-
    History of the accepted releases across loads (docs block
    load_history): a new version of a release whenever a load changes its
    sales, publisher, genre or rank-independent attributes; a release a
    later load no longer has is closed (`dbt_valid_to`), never deleted.
    Rank is carried but not compared: one new best seller re-ranks every
    row below it. Each version records the SHA-256 of the file that brought
    it (`seed_load_audit`).
-#}
{% snapshot snap_release_sales %}

{{ config(
    target_schema=target.schema ~ '_history',
    unique_key='release_id',
    strategy='check',
    check_cols=[
        'publisher_name', 'genre_name', 'na_sales', 'eu_sales', 'jp_sales',
        'other_sales', 'global_sales',
    ],
    invalidate_hard_deletes=True,
) }}

with

releases as (

    select * from {{ ref('int_releases__accepted') }}

),

latest_load as (

    select file_sha256
    from {{ source('seed_loads', 'seed_load_audit') }}
    where seed_name = 'vgsales'
    order by loaded_at desc
    limit 1

)

select
    releases.release_id,
    releases.game_name,
    releases.platform_code,
    releases.release_year,
    releases.genre_name,
    releases.publisher_name,
    releases.sales_rank,
    releases.na_sales,
    releases.eu_sales,
    releases.jp_sales,
    releases.other_sales,
    releases.global_sales,
    (select latest_load.file_sha256 from latest_load) as load_file_sha256

from releases

{% endsnapshot %}
