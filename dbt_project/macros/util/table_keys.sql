{#-
    Gives the `indexes` model config (the same shape as dbt-postgres's) a
    meaning on MariaDB, which dbt-mysql leaves unimplemented. Entry:
    {columns: [...], unique: bool, primary: bool}.
    The keys are declared in the `create table ... as select` itself rather
    than added afterwards: `alter table ... add primary key` rebuilds the
    whole table and each `create index` scans it again, which made the key
    steps as slow as the queries at a million rows.
-#}
{% macro mariadb__create_table_as(temporary, relation, sql) -%}
    {%- set keys = [] if temporary else config.get('indexes', default=[]) -%}
    {%- if config.get('contract').enforced -%}
        {{ exceptions.raise_compiler_error(
            'model contracts are not supported by create_table_as here') }}
    {%- endif -%}
    {%- set sql_header = config.get('sql_header', none) -%}
    {{ sql_header if sql_header is not none }}
    create {{ 'temporary ' if temporary }}table {{ relation.include(database=False) }}
    {%- if keys %} (
        {%- for key in keys %}
        {{ table_key_definition(relation, key) }}{{ ',' if not loop.last }}
        {%- endfor %}
    )
    {%- endif %}
    as
    {{ sql }}
{%- endmacro %}


{% macro table_key_definition(relation, index_dict) -%}
    {%- set columns = index_dict['columns'] -%}
    {%- if index_dict.get('primary') -%}
        primary key ({{ columns | join(', ') }})
    {%- else -%}
        {#- Named after the model, not the `__dbt_tmp` table it is built as. -#}
        {{ 'unique ' if index_dict.get('unique') }}key
        ix_{{ relation.identifier | replace('__dbt_tmp', '') }}__{{ columns | join('__') }}
        ({{ columns | join(', ') }})
    {%- endif -%}
{%- endmacro %}


{#- Nothing left to add after the build: create_table_as declared every key. -#}
{% macro mariadb__get_create_index_sql(relation, index_dict) -%}
{%- endmacro %}
