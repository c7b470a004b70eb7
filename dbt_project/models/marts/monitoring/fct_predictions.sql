{{ config(indexes=[
    {'columns': ['stream_id', 'item_index'], 'primary': true},
    {'columns': ['request_id']},
    {'columns': ['model_name', 'model_version']},
]) }}

{#-
    Every prediction the API logged, one row per predicted record: when,
    which endpoint, which model version, the prediction and the record's
    features. The release attributes that can match a prediction to the
    actual sales of a release (docs block prediction_actuals) are lifted out
    of the features; the rest stay in `features_json`.
-#}
with

predictions as (

    select * from {{ ref('stg_monitoring__prediction_log') }}

)

select
    request_id,
    item_index,
    stream_id,
    logged_at,
    endpoint,
    model_name,
    model_version,
    predicted_global_sales,
    cast(
        json_value(features_json, '$.platform')
        as char({{ var('max_category_length') }})
    )
    collate utf8mb4_bin as platform,
    cast(
        json_value(features_json, '$.genre')
        as char({{ var('max_category_length') }})
    )
    collate utf8mb4_bin as genre,
    cast(json_value(features_json, '$.publisher') as char(512))
    collate utf8mb4_bin as publisher,
    cast(json_value(features_json, '$.year') as double) as year,
    cast(json_value(features_json, '$.na_sales') as decimal(10, 2))
        as na_sales,
    cast(json_value(features_json, '$.eu_sales') as decimal(10, 2))
        as eu_sales,
    cast(json_value(features_json, '$.jp_sales') as decimal(10, 2))
        as jp_sales,
    cast(json_value(features_json, '$.other_sales') as decimal(10, 2))
        as other_sales,
    unseen_field_count,
    unseen_json,
    features_json,
    drained_at

from predictions
