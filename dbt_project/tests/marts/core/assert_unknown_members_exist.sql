{#- Each dimension has its unknown member (-1), the target of missing keys. -#}
with

unknown_members as (

    select
        'dim_game' as dimension,
        count(*) as members
    from {{ ref('dim_game') }}
    where game_id = -1
    union all
    select
        'dim_platform' as dimension,
        count(*) as members
    from {{ ref('dim_platform') }}
    where platform_id = -1
    union all
    select
        'dim_genre' as dimension,
        count(*) as members
    from {{ ref('dim_genre') }}
    where genre_id = -1
    union all
    select
        'dim_publisher' as dimension,
        count(*) as members
    from {{ ref('dim_publisher') }}
    where publisher_id = -1
    union all
    select
        'dim_year' as dimension,
        count(*) as members
    from {{ ref('dim_year') }}
    where year_id = -1

)

select
    dimension,
    members
from unknown_members
where members <> 1
