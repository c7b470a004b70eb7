{#-
    Every seed load leaves a row in `<seed schema>.seed_load_audit`: which file
    (path and SHA-256), how many rows it had and how many the table holds, which
    loader ran and how long the insert took. dbt hashes only the path of seeds
    over 1 MiB, so this table, not dbt's state, says what content was loaded:

        select * from vgsales_raw.seed_load_audit order by loaded_at desc;

    The SHA-256 comes from the seed's `meta.file_sha256` (dbt_project.yml
    renders it from VGSALES_SEED_SHA256, which ml.settings computes from the
    file when it exports the environment); it is null when that is unset.
-#}
{% macro seed_load_audit_relation() %}
    {{ return(api.Relation.create(schema=this.schema, identifier='seed_load_audit', type='table')) }}
{% endmacro %}


{% macro create_seed_load_audit_table() %}
    {% call statement('create_seed_load_audit') %}
        create table if not exists {{ seed_load_audit_relation() }} (
            loaded_at datetime(6) not null,
            invocation_id varchar(64) not null,
            seed_name varchar(255) not null,
            relation_name varchar(512) not null,
            file_path varchar(1024) not null,
            file_sha256 char(64),
            file_rows bigint not null,
            loaded_rows bigint not null,
            loader varchar(16) not null,
            load_seconds decimal(12, 3) not null
        )
    {% endcall %}
{% endmacro %}


{#-
    The rows `relation` holds after the load; a count that differs from the
    file's is an error (before the swap, so the seed table keeps its rows).
-#}
{% macro count_seed_rows(model, agate_table, relation) %}
    {%- set file_rows = agate_table.rows | length -%}
    {%- set loaded_rows = run_query('select count(*) from ' ~ relation).columns[0].values()[0] -%}
    {%- if loaded_rows != file_rows -%}
        {{ exceptions.raise_compiler_error(
            "seed " ~ model.name ~ ": " ~ agate_table.original_abspath ~ " has " ~ file_rows
            ~ " rows but " ~ relation ~ " holds " ~ loaded_rows ~ " after the load") }}
    {%- endif -%}
    {{ return(loaded_rows) }}
{% endmacro %}


{#- Records a load of `loaded_rows` rows (counted by `count_seed_rows`). -#}
{% macro record_seed_load(model, agate_table, loader, started, loaded_rows) %}
    {%- set file_rows = agate_table.rows | length -%}
    {%- set seconds = (modules.datetime.datetime.now() - started).total_seconds() -%}
    {%- set file_sha256 = model.config.get('meta', {}).get('file_sha256') or none -%}
    {#- The user's file, not the copy dbt read (ml/warehouse/seed_stage.py). -#}
    {%- set source_dir = model.config.get('meta', {}).get('source_dir') -%}
    {%- set file_path = source_dir ~ '/' ~ agate_table.original_abspath.split('/')[-1]
        if source_dir and model.original_file_path.startswith('staged_seeds/')
        else agate_table.original_abspath -%}
    {% call statement('record_seed_load') %}
        insert into {{ seed_load_audit_relation() }} (
            loaded_at, invocation_id, seed_name, relation_name, file_path,
            file_sha256, file_rows, loaded_rows, loader, load_seconds
        ) values (
            now(6),
            {{ sql_literal(invocation_id) }},
            {{ sql_literal(model.name) }},
            {{ sql_literal(this.render()) }},
            {{ sql_literal(file_path) }},
            {{ sql_literal(file_sha256) if file_sha256 else 'null' }},
            {{ file_rows }},
            {{ loaded_rows }},
            {{ sql_literal(loader) }},
            {{ '%.3f' % seconds }}
        )
    {% endcall %}
{% endmacro %}
