with

source as (

    select * from {{ source('monitoring', 'raw_training_reference') }}

)

select
    model_name,
    model_version,
    feature,
    feature_kind,
    member,
    bin_label,
    bin_order,
    lower_bound,
    upper_bound,
    reference_rows,
    member = '(missing)' as is_missing_member

from source
