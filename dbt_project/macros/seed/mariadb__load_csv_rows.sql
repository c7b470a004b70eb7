{#-
    dbt's default seed loader renders one `%s` placeholder per cell through a
    macro call and lets the connector bind them: ~23 s for the 16,598-row
    vgsales.csv. This one sends each batch of rows as a single JSON array
    (written by Python's json module, shipped as a hex literal) and lets
    MariaDB's JSON_TABLE turn it back into rows. No value is ever spliced into
    SQL text, so quotes, backslashes, newlines and NULs need no escaping, and
    the stored values are exactly agate's strings, as with the default loader
    (tests/integration/test_seed_load.py loads the same file both ways and compares).

    The fast path needs every column read as text, i.e. `column_types` set for
    every column: agate then reads '', blanks and 'null' (any case) as NULL and
    keeps everything else verbatim. Inferred numbers, dates or booleans would
    need the connector's conversions, so such seeds, and any seed run with
    `--vars '{seed_loader: stock}'`, go through dbt's default loader.
    The fast path loads into a new table and swaps it in only once every row
    is there, so a failed load leaves the table as it was (seed_replace.sql).
    Either way the load is recorded in `seed_load_audit` (seed_load_audit.sql).
-#}
{% macro mariadb__load_csv_rows(model, agate_table) %}
    {%- set started = modules.datetime.datetime.now() -%}
    {%- do create_seed_load_audit_table() -%}
    {%- set loader = seed_loader(model, agate_table) -%}
    {%- if loader == 'json_table' -%}
        {%- set replacement = create_seed_replacement(model, agate_table) -%}
        {%- set sql = load_csv_rows_as_json(model, agate_table, replacement) -%}
        {%- set loaded_rows = count_seed_rows(model, agate_table, replacement) -%}
        {%- do swap_seed_table(replacement) -%}
    {%- else -%}
        {%- set sql = default__load_csv_rows(model, agate_table) -%}
        {%- set loaded_rows = count_seed_rows(model, agate_table, this) -%}
    {%- endif -%}
    {%- do record_seed_load(model, agate_table, loader, started, loaded_rows) -%}
    {{ return(sql) }}
{% endmacro %}


{#- 'json_table' when every column is text and the stock loader is not asked for;
    `explain` logs why a seed falls back. -#}
{% macro seed_loader(model, agate_table, explain=true) %}
    {%- set requested = var('seed_loader', 'json_table') -%}
    {%- if requested not in ('json_table', 'stock') -%}
        {{ exceptions.raise_compiler_error(
            "var seed_loader must be 'json_table' or 'stock', got '" ~ requested ~ "'") }}
    {%- endif -%}
    {%- if requested == 'stock' -%}
        {{ return('stock') }}
    {%- endif -%}
    {%- for column_name in agate_table.column_names -%}
        {%- if adapter.convert_type(agate_table, loop.index0) != 'text' -%}
            {{ log("seed " ~ model.name ~ ": column " ~ column_name ~ " is not read as text;"
                   ~ " set column_types for every column to use the fast loader."
                   ~ " Loading with dbt's default loader.", info=True) if explain }}
            {{ return('stock') }}
        {%- endif -%}
    {%- endfor -%}
    {{ return('json_table') }}
{% endmacro %}


{#-
    Inserts the rows into `relation` in batches of `var('seed_batch_rows',
    10000)`, one statement each, and returns the statement's shape (payload
    elided) for the file dbt writes under target/run/.
-#}
{% macro load_csv_rows_as_json(model, agate_table, relation) %}
    {%- set batch_rows = var('seed_batch_rows', 10000) | int -%}
    {%- if batch_rows < 1 -%}
        {{ exceptions.raise_compiler_error(
            "var seed_batch_rows must be a positive number of rows, got '"
            ~ var('seed_batch_rows') ~ "'") }}
    {%- endif -%}
    {%- set columns_sql = get_seed_column_quoted_csv(model, agate_table.column_names) -%}
    {%- set column_count = agate_table.column_names | length -%}
    {%- set row_count = agate_table.rows | length -%}
    {#- agate's rows as plain tuples, transposed twice by zip_longest: C-level
        work where a Jinja loop over a million rows would dominate the load.
        The second transpose is lazy, so only one batch of tuples exists at once. -#}
    {%- set columns = modules.itertools.zip_longest(*agate_table.rows) | list -%}
    {%- set rows = modules.itertools.zip_longest(*columns) -%}
    {%- for _ in range(0, row_count, batch_rows) -%}
        {%- set batch = modules.itertools.islice(rows, batch_rows) | list -%}
        {%- set payload = tojson(batch).encode('ascii').hex() -%}
        {%- do adapter.add_query(
            json_rows_insert_sql(relation, columns_sql, column_count, "X'" ~ payload ~ "'"),
            abridge_sql_log=True) -%}
    {%- endfor -%}
    {{ return(json_rows_insert_sql(
        relation, columns_sql, column_count,
        "X'…' /* " ~ row_count ~ " rows in batches of " ~ batch_rows ~ " */")) }}
{% endmacro %}


{#-
    One batch: `json_hex` is a hex literal holding a JSON array of row arrays
    (strings or null). JSON_TABLE yields each array element as text in the
    connection's character set, and the insert converts text to the column
    types exactly as it converts the default loader's string literals.
-#}
{% macro json_rows_insert_sql(relation, columns_sql, column_count, json_hex) -%}
    insert into {{ relation }} ({{ columns_sql }})
    select
        {%- for i in range(column_count) %}
        c{{ i }}{{ ',' if not loop.last }}
        {%- endfor %}
    from json_table(
        convert({{ json_hex }} using utf8mb4),
        '$[*]' columns (
            {%- for i in range(column_count) %}
            c{{ i }} longtext character set utf8mb4 path '$[{{ i }}]'{{ ',' if not loop.last }}
            {%- endfor %}
        )
    ) as seed_rows
{%- endmacro %}
