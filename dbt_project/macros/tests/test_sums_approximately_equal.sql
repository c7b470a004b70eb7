{#-
    One row (both sums) when sum(column_name) over the model and
    sum(compare_column) over compare_model differ by more than tolerance.
-#}
{% test sums_approximately_equal(model, column_name, compare_model, compare_column=none, tolerance=0.001) %}

select
    model_sum.total as model_total,
    compare_sum.total as compare_total
from
    (select coalesce(sum({{ column_name }}), 0) as total from {{ model }}) as model_sum
cross join
    (
        select coalesce(sum({{ compare_column or column_name }}), 0) as total
        from {{ compare_model }}
    ) as compare_sum
where abs(model_sum.total - compare_sum.total) > {{ tolerance }}

{% endtest %}
