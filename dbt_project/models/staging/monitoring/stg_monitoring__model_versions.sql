with

source as (

    select * from {{ source('monitoring', 'raw_model_versions') }}

)

select
    model_name,
    model_version,
    run_id,
    data_digest,
    train_split,
    train_rows,
    recorded_at

from source
