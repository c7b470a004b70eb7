{{ config(
    materialized='table',
    indexes=[{'columns': ['platform', 'genre']}],
) }}

{#-
    The actual sales of every accepted release of known year, keyed by the
    attributes a logged prediction can be matched on (docs block
    prediction_actuals). Categories are byte-compared, as the models compare
    them; the index makes the match with the prediction log a lookup rather
    than a scan of the mart per prediction.
-#}
with

releases as (

    select * from {{ ref('ml_release_features') }}
    where year is not null

)

select
    release_id,
    cast(platform as char(64)) collate utf8mb4_bin as platform,
    cast(genre as char(64)) collate utf8mb4_bin as genre,
    cast(publisher as char(512)) collate utf8mb4_bin as publisher,
    year,
    na_sales,
    eu_sales,
    jp_sales,
    other_sales,
    cast(global_sales as double) as global_sales

from releases
