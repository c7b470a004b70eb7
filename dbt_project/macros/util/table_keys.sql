{#-
    Gives the `indexes` model config (the same shape as dbt-postgres's) a
    meaning on MariaDB, which dbt-mysql leaves unimplemented. Entry:
    {columns: [...], unique: bool, primary: bool}.
    The keys are declared in the `create table ... as select` itself rather
    than added afterwards: `alter table ... add primary key` rebuilds the
    whole table and each `create index` scans it again, which made the key
    steps as slow as the queries at a million rows.
-#}
{#-
    A model with an enforced contract (docs/contracts.md) is checked against
    its yml first (dbt's own assertion: names and types, or the build fails
    before the table is touched), then created with the contract's column
    types beside its keys, from the model's query in the contract's order.
-#}
{% macro mariadb__create_table_as(temporary, relation, sql) -%}
    {%- set keys = [] if temporary else config.get('indexes', default=[]) -%}
    {%- set contracted = config.get('contract').enforced -%}
    {%- set definitions = [] -%}
    {%- if contracted -%}
        {{ get_assert_columns_equivalent(sql) }}
        {%- do definitions.extend(adapter.render_raw_columns_constraints(raw_columns=model['columns'])) -%}
        {%- set sql = get_select_subquery(sql) -%}
    {%- endif -%}
    {%- for key in keys -%}
        {%- do definitions.append(table_key_definition(relation, key)) -%}
    {%- endfor -%}
    {%- set sql_header = config.get('sql_header', none) -%}
    {{ sql_header if sql_header is not none }}
    create {{ 'temporary ' if temporary }}table {{ relation.include(database=False) }}
    {%- if definitions %} (
        {%- for definition in definitions %}
        {{ definition }}{{ ',' if not loop.last }}
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
