{{ config(indexes=[
    {'columns': ['drift_source', 'model_name', 'feature'], 'unique': true},
]) }}

{#-
    One row per drift source, champion and feature: the population
    stability index of the current distribution against the training
    reference, the rate of unseen categories, and the status the drift
    tests give it (docs block drift_checks).
-#}
with

bins as (

    select * from {{ ref('mon_feature_bins') }}

),

per_feature as (

    select
        drift_source,
        model_name,
        model_version,
        feature,
        feature_kind,
        sum(reference_rows) as reference_rows,
        sum(current_rows) as current_rows,
        sum(unseen_rows) as unseen_rows,
        sum(
            case when bin_label <> '(missing)' then current_rows else 0 end
        ) as current_present_rows,
        sum(psi_term) as psi

    from bins
    group by drift_source, model_name, model_version, feature, feature_kind

),

judged as (

    select
        *,
        case
            when feature_kind = 'category'
                then
                    cast(unseen_rows as double)
                    / nullif(current_present_rows, 0)
        end as unseen_rate,
        current_rows >= {{ var('drift_min_rows') }} as is_evaluated

    from per_feature

)

select
    drift_source,
    model_name,
    model_version,
    feature,
    feature_kind,
    reference_rows,
    current_rows,
    unseen_rows,
    unseen_rate,
    psi,
    is_evaluated,
    case
        when not is_evaluated then 'too_few_rows'
        when psi >= {{ var('drift_psi_error') }} then 'error'
        when psi >= {{ var('drift_psi_warn') }} then 'warn'
        when coalesce(unseen_rate, 0) >= {{ var('drift_unseen_warn') }}
            then 'warn'
        else 'ok'
    end as drift_status,
    {{ var('drift_psi_warn') }} as psi_warn_threshold,
    {{ var('drift_psi_error') }} as psi_error_threshold,
    {{ var('drift_window_days') }} as window_days,
    utc_timestamp() as checked_at

from judged
