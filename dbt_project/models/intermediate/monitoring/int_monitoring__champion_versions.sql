{#-
    The served version of each model with the facts of its training
    reference. A champion whose reference was never recorded is left out
    (and reported by the test on this model's parent).
-#}
with

champions as (

    select * from {{ ref('stg_monitoring__model_champions') }}

),

versions as (

    select * from {{ ref('stg_monitoring__model_versions') }}

)

select
    champions.model_name,
    champions.model_version,
    versions.run_id,
    versions.data_digest,
    versions.train_split,
    versions.train_rows

from champions
inner join versions
    on
        champions.model_name = versions.model_name
        and champions.model_version = versions.model_version
