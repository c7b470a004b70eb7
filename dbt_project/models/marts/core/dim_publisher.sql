{{ config(indexes=[{'columns': ['publisher_id'], 'primary': true}]) }}

with

releases as (

    select * from {{ ref('int_releases__accepted') }}

),

known as (

    select
        publisher_id,
        publisher_name,
        canonical_publisher_id,
        canonical_publisher_name,
        count(*) as release_count,
        min(release_year) as first_release_year,
        false as is_unknown

    from releases
    where not is_publisher_unknown
    group by
        publisher_id,
        publisher_name,
        canonical_publisher_id,
        canonical_publisher_name

),

unknown_member as (

    select
        -1 as publisher_id,
        'Unknown' as publisher_name,
        -1 as canonical_publisher_id,
        'Unknown' as canonical_publisher_name,
        (
            select count(*) as unknown_releases
            from releases
            where is_publisher_unknown
        ) as release_count,
        null as first_release_year,
        true as is_unknown

)

select * from known
union all
select * from unknown_member
