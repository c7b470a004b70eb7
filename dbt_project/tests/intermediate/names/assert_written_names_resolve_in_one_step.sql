{#-
    A written name resolves to its canonical name in one step: no canonical
    name is itself written as a name of something else (a chain A -> B -> C,
    or a cycle). Returns each row whose canonical name is linked onward.
-#}
with

written as (

    select * from {{ ref('int_names__written') }}

)

select
    written.name_field,
    written.written_name,
    written.canonical_name,
    onward.canonical_name as onward_name

from written
inner join written as onward
    on
        written.name_field = onward.name_field
        and written.canonical_name = onward.written_name
        and onward.written_name <> onward.canonical_name
