{#-
    A typed null for each contract column, whose type dbt compares with the
    type of the model's column (both as the driver reports them). MariaDB's
    CAST knows neither BIGINT nor TEXT, nor a collation inside the cast: a
    bigint-sized literal gives the driver's LONGLONG as a BIGINT column does,
    a char of TEXT's length its BLOB code; the collation is the table's
    business, not the comparison's.
-#}
{% macro mariadb__get_empty_schema_sql(columns) %}
    {%- set untyped = [] -%}
    select
    {%- for name in columns %}
        {%- set column = columns[name] -%}
        {%- if column['data_type'] is not defined -%}
            {%- do untyped.append(column['name']) -%}
        {%- endif -%}
        {%- set data_type = (column['data_type'] or '') | lower
            | replace(' character set ', ' collate ') -%}
        {%- set data_type = data_type.split(' collate ')[0] | trim %}
        {% if data_type == 'bigint' -%}
            if(false, 12345678901, null)
        {%- elif data_type.endswith('text') -%}
            cast(null as char(16383))
        {%- else -%}
            cast(null as {{ data_type }})
        {%- endif %}
        as {{ adapter.quote(column['name']) if column.get('quote') else column['name'] }}
        {{- ',' if not loop.last }}
    {%- endfor %}
    {%- if untyped -%}
        {{ exceptions.column_type_missing(column_names=untyped) }}
    {%- endif -%}
{% endmacro %}
