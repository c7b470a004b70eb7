{#-
    Gives the `indexes` model config (the same shape as dbt-postgres's) a
    meaning on MariaDB, which dbt-mysql leaves unimplemented: dbt's table
    materialization calls this for each entry after the table is built.
    Entry: {columns: [...], unique: bool, primary: bool}.
-#}
{% macro mariadb__get_create_index_sql(relation, index_dict) -%}
    {%- set columns = index_dict['columns'] -%}
    {%- if index_dict.get('primary') -%}
        alter table {{ relation }} add primary key ({{ columns | join(', ') }})
    {%- else -%}
        create {{ 'unique ' if index_dict.get('unique') }}index
            ix_{{ relation.identifier }}__{{ columns | join('__') }}
        on {{ relation }} ({{ columns | join(', ') }})
    {%- endif -%}
{%- endmacro %}
