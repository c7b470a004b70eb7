{{ config(indexes=[{'columns': ['model_name', 'feature']}]) }}

{#-
    Reference and current share of every bin, per drift source, model and
    feature of the champions, and each bin's term of the population
    stability index (docs block drift_checks). Bins are the reference's,
    plus `(unseen)` and `(missing)` when current observations fall there.
-#}
with

reference as (

    select * from {{ ref('stg_monitoring__training_reference') }}

),

champions as (

    select * from {{ ref('int_monitoring__champion_versions') }}

),

current_binned as (

    select * from {{ ref('int_monitoring__current_binned') }}

),

drift_sources as (

    select 'predictions' as drift_source
    union all
    select 'batch' as drift_source

),

reference_bins as (

    select
        reference.model_name,
        reference.model_version,
        reference.feature,
        reference.feature_kind,
        reference.bin_label,
        min(reference.bin_order) as bin_order,
        sum(reference.reference_rows) as reference_rows

    from reference
    inner join champions
        on
            reference.model_name = champions.model_name
            and reference.model_version = champions.model_version
    group by
        reference.model_name,
        reference.model_version,
        reference.feature,
        reference.feature_kind,
        reference.bin_label

),

current_bins as (

    select
        drift_source,
        model_name,
        model_version,
        feature,
        bin_label,
        count(*) as current_rows,
        sum(case when is_unseen then 1 else 0 end) as unseen_rows

    from current_binned
    group by drift_source, model_name, model_version, feature, bin_label

),

features as (

    select distinct
        model_name,
        model_version,
        feature,
        feature_kind

    from reference_bins

),

bin_keys as (

    select
        drift_sources.drift_source,
        reference_bins.model_name,
        reference_bins.model_version,
        reference_bins.feature,
        reference_bins.bin_label

    from reference_bins
    cross join drift_sources
    union
    select
        drift_source,
        model_name,
        model_version,
        feature,
        bin_label

    from current_bins

),

counted as (

    select
        bin_keys.drift_source,
        bin_keys.model_name,
        bin_keys.model_version,
        bin_keys.feature,
        features.feature_kind,
        bin_keys.bin_label,
        case bin_keys.bin_label
            when '(unseen)' then 1000000
            when '(missing)' then 1000001
            else reference_bins.bin_order
        end as bin_order,
        coalesce(reference_bins.reference_rows, 0) as reference_rows,
        coalesce(current_bins.current_rows, 0) as current_rows,
        coalesce(current_bins.unseen_rows, 0) as unseen_rows

    from bin_keys
    inner join features
        on
            bin_keys.model_name = features.model_name
            and bin_keys.model_version = features.model_version
            and bin_keys.feature = features.feature
    left join reference_bins
        on
            bin_keys.model_name = reference_bins.model_name
            and bin_keys.model_version = reference_bins.model_version
            and bin_keys.feature = reference_bins.feature
            and bin_keys.bin_label = reference_bins.bin_label
    left join current_bins
        on
            bin_keys.drift_source = current_bins.drift_source
            and bin_keys.model_name = current_bins.model_name
            and bin_keys.model_version = current_bins.model_version
            and bin_keys.feature = current_bins.feature
            and bin_keys.bin_label = current_bins.bin_label

),

shared as (

    select
        *,
        cast(reference_rows as double) / nullif(
            sum(reference_rows) over per_feature, 0
        ) as reference_share,
        cast(current_rows as double) / nullif(
            sum(current_rows) over per_feature, 0
        ) as current_share

    from counted
    window per_feature as (
        partition by drift_source, model_name, model_version, feature
    )

)

select
    drift_source,
    model_name,
    model_version,
    feature,
    feature_kind,
    bin_label,
    bin_order,
    reference_rows,
    current_rows,
    unseen_rows,
    reference_share,
    current_share,
    {{ psi_term('current_share', 'reference_share') }} as psi_term

from shared
