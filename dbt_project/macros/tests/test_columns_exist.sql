{#- One row per expected column missing from the relation. -#}
{% test columns_exist(model, columns) %}

{%- set present = [] -%}
{%- if execute -%}
    {%- for column in adapter.get_columns_in_relation(model) -%}
        {%- do present.append(column.name | lower) -%}
    {%- endfor -%}
{%- endif -%}
{%- set missing = [] -%}
{%- for column in columns if column | lower not in present -%}
    {%- do missing.append(column) -%}
{%- endfor %}

{%- if missing %}
    {%- for column in missing %}
select {{ sql_literal(column) }} as missing_column
        {%- if not loop.last %}
union all
        {%- endif %}
    {%- endfor %}
{%- else %}
select cast(null as char(64)) as missing_column
from (select 1 as no_row) as nothing_missing
where 1 = 0
{%- endif %}

{% endtest %}
