with

source as (

    select * from {{ source('monitoring', 'raw_model_champions') }}

)

select
    model_name,
    model_version,
    recorded_at

from source
