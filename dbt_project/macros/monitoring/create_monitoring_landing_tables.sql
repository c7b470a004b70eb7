{#-
    The landing tables Python writes into (docs block monitoring_landing),
    declared here so the warehouse owns their shape: dbt creates them on
    every invocation (`on-run-start`, idempotent), the drain and the
    training hook only append with INSERT IGNORE. They live next to the seeds
    in `<db>_raw`; nothing in dbt ever drops or rebuilds them.

    Category values are compared as the models compare them, byte for byte
    (utf8mb4_bin): `Wii` and `WII` are different platforms to a one-hot
    encoder, not to MariaDB's default collation.
-#}
{% macro monitoring_landing_schema() -%}
    {{ return(var('raw_schema', none) or target.schema ~ '_raw') }}
{%- endmacro %}


{#-
    Runs as `on-run-start`: each statement on its own (the driver takes one
    statement per call), rendering to nothing so dbt has no hook SQL left.
-#}
{% macro create_monitoring_landing_tables() %}
    {%- if execute -%}
        {%- for statement in monitoring_landing_ddl().split(';') if statement.strip() -%}
            {%- do run_query(statement) -%}
        {%- endfor -%}
        {%- do rekey_prediction_log() -%}
    {%- endif -%}
{% endmacro %}


{#-
    raw_prediction_log was keyed by (request_id, item_index), which let a
    client reusing another request's id erase its rows. A table
    from before is re-keyed in place; stream ids are unique, so no row is lost.
-#}
{% macro rekey_prediction_log() %}
    {%- set schema = monitoring_landing_schema() -%}
    {%- set first_key_column = run_query(
        "select column_name from information_schema.statistics"
        ~ " where table_schema = '" ~ schema ~ "' and table_name = 'raw_prediction_log'"
        ~ " and index_name = 'PRIMARY' and seq_in_index = 1").columns[0].values() -%}
    {%- if first_key_column | list == ['request_id'] -%}
        {%- do run_query(
            "alter table `" ~ schema ~ "`.raw_prediction_log drop primary key,"
            ~ " add primary key (stream_id, item_index),"
            ~ " add key ix_raw_prediction_log__request (request_id)") -%}
    {%- endif -%}
{% endmacro %}


{% macro monitoring_landing_ddl() %}
    {%- set schema = monitoring_landing_schema() -%}
    create database if not exists `{{ schema }}`;

    create table if not exists `{{ schema }}`.raw_prediction_log (
        request_id varchar(64) collate ascii_bin not null,
        item_index int not null,
        stream_id varchar(32) collate ascii_bin not null,
        logged_at datetime(6) not null,
        endpoint varchar(64) not null,
        model_name varchar(64) not null,
        model_version int not null,
        features_json longtext collate utf8mb4_bin not null
        check (json_valid(features_json)),
        predicted_global_sales double,
        unseen_json text collate utf8mb4_bin,
        drained_at datetime(6) not null,
        -- Keyed by what Redis assigns: a client chooses its request id.
        primary key (stream_id, item_index),
        key ix_raw_prediction_log__request (request_id),
        key ix_raw_prediction_log__model (model_name, model_version, logged_at)
    );

    create table if not exists `{{ schema }}`.raw_model_versions (
        model_name varchar(64) not null,
        model_version int not null,
        run_id varchar(64) not null,
        data_digest varchar(64) not null,
        train_split varchar(64) not null,
        train_rows int not null,
        recorded_at datetime(6) not null,
        primary key (model_name, model_version)
    );

    create table if not exists `{{ schema }}`.raw_training_reference (
        model_name varchar(64) not null,
        model_version int not null,
        feature varchar(64) not null,
        feature_kind varchar(16) not null,
        member varchar(512) collate utf8mb4_bin not null,
        bin_label varchar(512) collate utf8mb4_bin not null,
        bin_order int not null,
        lower_bound double,
        upper_bound double,
        reference_rows int not null,
        primary key (model_name, model_version, feature, member)
    );

    create table if not exists `{{ schema }}`.raw_model_champions (
        model_name varchar(64) not null primary key,
        model_version int not null,
        recorded_at datetime(6) not null
    );

    -- What the prediction log lost, so that predictions answered equal rows
    -- in raw_prediction_log plus these (docs block monitoring_landing).
    create table if not exists `{{ schema }}`.raw_prediction_log_losses (
        loss_id varchar(64) collate ascii_bin not null primary key,
        noticed_at datetime(6) not null,
        reason varchar(32) not null,
        predictions bigint,
        entries int,
        drained_at datetime(6) not null
    );
{% endmacro %}
