{{ config(
    materialized='table',
    indexes=[{'columns': ['model_name', 'feature']}],
) }}

{#-
    The "current" side of the drift comparison, one row per observation and
    feature of each champion (docs block drift_checks):

    * `predictions`: records the champion version answered in the last
      `drift_window_days` days, features as the model received them, a
      category written another way resolved as the API resolves it
      (int_names__written: a linked name is its canonical name, not unseen);
    * `batch`: the rows of the loaded `ml_release_features` a retrain would
      learn from (the champion's train split, or `all` labelled rows, year
      known).

    Features are those of the champion's training reference: categories as
    text compared byte for byte, numbers as double. The mart is unpivoted
    in one pass (macro feature_value_by_name). A table: every drift model
    reads it.
-#}
{%- set features = drift_reference_features() %}

with

champions as (

    select * from {{ ref('int_monitoring__champion_versions') }}

),

reference_features as (

    select distinct
        model_name,
        model_version,
        feature,
        feature_kind

    from {{ ref('stg_monitoring__training_reference') }}

),

predictions as (

    select * from {{ ref('stg_monitoring__prediction_log') }}
    where
        logged_at
        >= utc_timestamp() - interval {{ var('drift_window_days') }} day

),

mart as (

    select * from {{ ref('ml_release_features') }}

),

written_names as (

    select * from {{ ref('int_names__written') }}

),

prediction_values as (

    select
        'predictions' as drift_source,
        predictions.model_name,
        predictions.model_version,
        concat(predictions.stream_id, '#', predictions.item_index)
            as observation_id,
        reference_features.feature,
        reference_features.feature_kind,
        json_value(
            predictions.features_json,
            concat('$."', reference_features.feature, '"')
        ) as feature_value

    from predictions
    inner join champions
        on
            predictions.model_name = champions.model_name
            and predictions.model_version = champions.model_version
    inner join reference_features
        on
            champions.model_name = reference_features.model_name
            and champions.model_version = reference_features.model_version

),

resolved_predictions as (

    select
        prediction_values.drift_source,
        prediction_values.model_name,
        prediction_values.model_version,
        prediction_values.observation_id,
        prediction_values.feature,
        prediction_values.feature_kind,
        coalesce(
            written_names.canonical_name collate utf8mb4_bin,
            prediction_values.feature_value
        ) as feature_value

    -- Names match as the warehouse compares them (the server's collation,
    -- case and accents ignored); the logged JSON itself is compared byte
    -- for byte.
    from prediction_values
    left join written_names
        on
            prediction_values.feature_kind = 'category'
            and prediction_values.feature = written_names.name_field
            and prediction_values.feature_value collate utf8mb4_unicode_ci
            = written_names.written_name

),

batch_rows as (

    select
        champions.model_name,
        champions.model_version,
        mart.*

    from mart
    inner join champions
        on
            case champions.train_split
                when 'split_time' then mart.split_time
                when 'split_random' then mart.split_random
                when 'all' then 'train'
            end = 'train'
    where mart.year is not null

),

batch_values as (

    select
        'batch' as drift_source,
        batch_rows.model_name,
        batch_rows.model_version,
        batch_rows.release_id as observation_id,
        reference_features.feature,
        reference_features.feature_kind,
        {{ feature_value_by_name(
            'reference_features.feature', 'batch_rows', features
        ) }} as feature_value

    from batch_rows
    inner join reference_features
        on
            batch_rows.model_name = reference_features.model_name
            and batch_rows.model_version = reference_features.model_version

),

unioned as (

    select * from resolved_predictions
    union all
    select * from batch_values

)

select
    cast(drift_source as char(16)) as drift_source,
    cast(model_name as char(64)) as model_name,
    model_version,
    cast(observation_id as char(128)) as observation_id,
    cast(feature as char(64)) as feature,
    cast(feature_kind as char(16)) as feature_kind,
    case
        when feature_kind = 'category'
            then cast(feature_value as char(512)) collate utf8mb4_bin
    end as category_value,
    case
        when feature_kind = 'number' then cast(feature_value as double)
    end as number_value

from unioned
