{#-
    Each current observation in the bin of the champion's reference it
    falls into: a category in its own bin or `(other)`, `(unseen)` when
    training never saw it; a number in the reference interval
    (lower, upper]; `(missing)` when the value is absent.
-#}
with

current_values as (

    select * from {{ ref('int_monitoring__current_values') }}

),

reference as (

    select * from {{ ref('stg_monitoring__training_reference') }}

),

categories as (

    select
        current_values.drift_source,
        current_values.model_name,
        current_values.model_version,
        current_values.feature,
        current_values.observation_id,
        case
            when current_values.category_value is null then '(missing)'
            when reference.member is null then '(unseen)'
            else reference.bin_label
        end as bin_label,
        current_values.category_value is not null
        and reference.member is null as is_unseen

    from current_values
    left join reference
        on
            current_values.model_name = reference.model_name
            and current_values.model_version = reference.model_version
            and current_values.feature = reference.feature
            and current_values.category_value = reference.member
            and not reference.is_missing_member
    where current_values.feature_kind = 'category'

),

numbers as (

    select
        current_values.drift_source,
        current_values.model_name,
        current_values.model_version,
        current_values.feature,
        current_values.observation_id,
        coalesce(reference.bin_label, '(missing)') as bin_label,
        false as is_unseen

    from current_values
    left join reference
        on
            current_values.model_name = reference.model_name
            and current_values.model_version = reference.model_version
            and current_values.feature = reference.feature
            and not reference.is_missing_member
            and (
                reference.lower_bound is null
                or current_values.number_value > reference.lower_bound
            )
            and (
                reference.upper_bound is null
                or current_values.number_value <= reference.upper_bound
            )
    where current_values.feature_kind = 'number'

)

select * from categories
union all
select * from numbers
