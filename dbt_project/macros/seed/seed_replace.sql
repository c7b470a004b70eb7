{#-
    dbt's seed materialization empties the table first (truncate, or drop and
    create with --full-refresh; both DDL, so committed at once) and inserts
    the rows after. A load that fails midway (a value the column refuses, a
    lost connection, a killed process) used to leave the raw table empty.

    For the JSON_TABLE loader the table is not touched until every row is in:
    `mariadb__reset_csv_table` leaves it alone, the rows go into
    `<table>__dbt_new` (created like the table, or from `column_types` with
    --full-refresh, as dbt would), and one `RENAME TABLE` (atomic in MariaDB)
    swaps the two; readers see the old rows or the new, never a mix. A failed
    load leaves `<table>__dbt_new` behind, which the next load drops first.

    Before anything is touched the file is checked: its header must be the
    columns `column_types` declares, and it must have rows.
-#}
{% macro mariadb__reset_csv_table(model, full_refresh, old_relation, agate_table) %}
    {%- do check_seed_file(model, agate_table) -%}
    {%- if seed_loader(model, agate_table, explain=false) == 'json_table' -%}
        {{ return('-- ' ~ old_relation ~ ' is replaced by RENAME TABLE once every row is in') }}
    {%- endif -%}
    {{ return(default__reset_csv_table(model, full_refresh, old_relation, agate_table)) }}
{% endmacro %}


{#- A first load: nothing to protect, but a refused file must not create the table. -#}
{% macro mariadb__create_csv_table(model, agate_table) %}
    {%- do check_seed_file(model, agate_table) -%}
    {{ return(default__create_csv_table(model, agate_table)) }}
{% endmacro %}


{#- Refuses a file whose header is not the declared columns, or that has no rows. -#}
{% macro check_seed_file(model, agate_table) %}
    {%- set declared = (model.config.get('column_types') or {}).keys() | list -%}
    {%- set found = agate_table.column_names | list -%}
    {%- set kept = " " ~ this.render() ~ " is left as it was." -%}
    {%- if declared and (found | sort) != (declared | sort) -%}
        {%- set missing = declared | reject('in', found) | join(', ') -%}
        {%- set unexpected = found | reject('in', declared) | join(', ') -%}
        {{ exceptions.raise_compiler_error(
            "seed " ~ model.name ~ ": " ~ agate_table.original_abspath ~ " has the columns "
            ~ found | join(',') ~ "; column_types in dbt_project.yml declares "
            ~ declared | join(',') ~ " (missing: " ~ (missing or 'none') ~ "; unexpected: "
            ~ (unexpected or 'none') ~ ")." ~ kept) }}
    {%- endif -%}
    {%- if agate_table.rows | length == 0 -%}
        {{ exceptions.raise_compiler_error(
            "seed " ~ model.name ~ ": " ~ agate_table.original_abspath
            ~ " has a header but no rows." ~ kept) }}
    {%- endif -%}
{% endmacro %}


{#- `<seed table><suffix>` in the seed's schema. -#}
{% macro seed_side_relation(suffix) %}
    {{ return(api.Relation.create(schema=this.schema, identifier=this.identifier ~ suffix, type='table')) }}
{% endmacro %}


{#-
    An empty `<table>__dbt_new`: like the table (same columns and indexes, as
    dbt's truncate would keep), or from the seed's columns with --full-refresh
    (as dbt's drop and create would make it). A leftover of a failed load is
    dropped first.
-#}
{% macro create_seed_replacement(model, agate_table) %}
    {%- set replacement = seed_side_relation('__dbt_new') -%}
    {% call statement('drop_seed_replacement') %}
        drop table if exists {{ replacement }}
    {% endcall %}
    {%- if should_full_refresh() -%}
        {%- set column_types = model.config.get('column_types') or {} -%}
        {%- set quote_columns = model.config.get('quote_columns', none) -%}
        {% call statement('create_seed_replacement') %}
            create table {{ replacement }} (
                {%- for column_name in agate_table.column_names %}
                {{ adapter.quote_seed_column(column_name | string, quote_columns) }}
                {{ column_types.get(column_name, adapter.convert_type(agate_table, loop.index0)) }}
                {{- ',' if not loop.last }}
                {%- endfor %}
            )
        {% endcall %}
    {%- else -%}
        {% call statement('create_seed_replacement') %}
            create table {{ replacement }} like {{ this.render() }}
        {% endcall %}
    {%- endif -%}
    {{ return(replacement) }}
{% endmacro %}


{#- Puts `replacement` in the seed table's place in one RENAME, then drops the old rows. -#}
{% macro swap_seed_table(replacement) %}
    {%- set previous = seed_side_relation('__dbt_old') -%}
    {% call statement('drop_seed_previous') %}
        drop table if exists {{ previous }}
    {% endcall %}
    {% call statement('swap_seed_table') %}
        rename table {{ this.render() }} to {{ previous }}, {{ replacement }} to {{ this.render() }}
    {% endcall %}
    {% call statement('drop_seed_previous') %}
        drop table {{ previous }}
    {% endcall %}
{% endmacro %}
