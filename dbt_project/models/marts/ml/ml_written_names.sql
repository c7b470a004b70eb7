{#-
    The name resolution the ML layer reads (docs block written_names): the
    pipeline stores it with each registered model version, so the API
    resolves a request's names without reading the warehouse.
-#}
with

written as (

    select * from {{ ref('int_names__written') }}

)

select
    name_field,
    written_name,
    canonical_name,
    link_kind

from written
