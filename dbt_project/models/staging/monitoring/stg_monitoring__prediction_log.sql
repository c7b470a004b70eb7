with

source as (

    select * from {{ source('monitoring', 'raw_prediction_log') }}

)

select
    request_id,
    item_index,
    stream_id,
    logged_at,
    endpoint,
    model_name,
    model_version,
    features_json,
    predicted_global_sales,
    coalesce(json_length(unseen_json), 0) as unseen_field_count,
    unseen_json,
    drained_at

from source
