{#- One row (holding the count) when the row count lies outside the range. -#}
{% test row_count_between(model, min_value, max_value) %}

select row_count
from (
    select count(*) as row_count
    from {{ model }}
) as counted
where row_count < {{ min_value }} or row_count > {{ max_value }}

{% endtest %}
