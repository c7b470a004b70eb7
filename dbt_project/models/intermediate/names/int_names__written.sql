{{ config(
    materialized='table',
    indexes=[{'columns': ['name_field', 'written_name']}],
) }}

{#-
    Every way of writing a publisher, genre or platform that the reference
    seeds know, with the name vgsales.csv files it under (docs block
    written_names): the publisher lineage, the genre names of the newer
    taxonomy, and a platform's code, its full names in ref_platforms (one
    row per comma-separated regional name) and its aliases. The one
    definition of name resolution: the warehouse, the drift checks and
    (through ml_written_names, stored with each model version) the API all
    resolve a name here. Matching is the collation's (case and accents
    ignored). A table: validation, the releases and the drift models read it.
-#}
with recursive

lineage as (

    select * from {{ ref('ref_publisher_lineage') }}

),

genres as (

    select * from {{ ref('ref_genres') }}

),

genre_names as (

    select * from {{ ref('ref_genre_names') }}

),

platforms as (

    select * from {{ ref('ref_platforms') }}

),

platform_names as (

    select * from {{ ref('ref_platform_names') }}

),

regional_names as (

    -- One row per comma-separated name: each step takes the first name off
    -- what is left of platform_name.
    select
        platform_code,
        cast(null as char(128)) as written_name,
        cast(platform_name as char(512)) as other_names

    from platforms

    union all

    select
        platform_code,
        trim(substring_index(other_names, ',', 1)) as written_name,
        nullif(
            trim(substring(other_names, length(
                substring_index(other_names, ',', 1)
            ) + 2)),
            ''
        ) as other_names

    from regional_names
    where other_names is not null

),

written as (

    select
        'publisher' as name_field,
        written_name,
        canonical_name,
        link_kind

    from lineage

    union all

    select
        'genre' as name_field,
        genre_name as written_name,
        genre_name as canonical_name,
        'name' as link_kind

    from genres

    union all

    select
        'genre' as name_field,
        written_name,
        genre_name as canonical_name,
        name_kind as link_kind

    from genre_names

    union all

    select
        'platform' as name_field,
        platform_code as written_name,
        platform_code as canonical_name,
        'code' as link_kind

    from platforms

    union all

    select
        'platform' as name_field,
        written_name,
        platform_code as canonical_name,
        'name' as link_kind

    from regional_names
    where
        written_name is not null
        and written_name <> platform_code

    union all

    select
        'platform' as name_field,
        written_name,
        platform_code as canonical_name,
        'alias' as link_kind

    from platform_names

)

select
    cast(name_field as char(16)) as name_field,
    cast(written_name as char(128)) as written_name,
    cast(canonical_name as char(128)) as canonical_name,
    cast(link_kind as char(16)) as link_kind

from written
