{#- One row (both counts) when the two relations differ in row count. -#}
{% test equal_rowcount(model, compare_model) %}

select
    model_rows.row_count as model_rows,
    compare_rows.row_count as compare_rows
from (select count(*) as row_count from {{ model }}) as model_rows
cross join
    (select count(*) as row_count from {{ compare_model }}) as compare_rows
where model_rows.row_count <> compare_rows.row_count

{% endtest %}
