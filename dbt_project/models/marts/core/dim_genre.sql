{{ config(indexes=[{'columns': ['genre_id'], 'primary': true}]) }}

with

genres as (

    select * from {{ ref('ref_genres') }}

),

known as (

    select
        {{ surrogate_key('genre_name') }} as genre_id,
        genre_name,
        genre_description,
        false as is_unknown

    from genres

),

unknown_member as (

    select
        -1 as genre_id,
        'Unknown' as genre_name,
        'Genre not known.' as genre_description,
        true as is_unknown

)

select * from known
union all
select * from unknown_member
