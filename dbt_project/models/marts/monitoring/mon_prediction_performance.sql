{#-
    Performance drift: logged predictions matched with the actual sales that
    later loads brought (docs block prediction_actuals), scored per model
    version and release year, plus one `all` row per version. Empty until a
    load holds releases that match earlier predictions.
-#}
with

predictions as (

    select * from {{ ref('fct_predictions') }}

),

releases as (

    select * from {{ ref('int_monitoring__release_outcomes') }}

),

pairs as (

    select
        predictions.model_name,
        predictions.model_version,
        predictions.stream_id,
        predictions.item_index,
        releases.year as release_year,
        predictions.predicted_global_sales as predicted,
        releases.global_sales as actual

    from predictions
    inner join releases
        on
            predictions.platform = releases.platform
            and predictions.genre = releases.genre
            and predictions.year = releases.year
            and (
                predictions.publisher is null
                or predictions.publisher = releases.publisher
            )
            and (
                predictions.na_sales is null
                or (
                    predictions.na_sales = releases.na_sales
                    and predictions.eu_sales = releases.eu_sales
                    and predictions.jp_sales = releases.jp_sales
                    and predictions.other_sales = releases.other_sales
                )
            )
    where predictions.predicted_global_sales is not null

),

periods as (

    select
        model_name,
        model_version,
        cast(release_year as char(8)) as period_label,
        release_year,
        stream_id,
        item_index,
        predicted,
        actual

    from pairs
    union all
    select
        model_name,
        model_version,
        'all' as period_label,
        null as release_year,
        stream_id,
        item_index,
        predicted,
        actual

    from pairs

),

sums as (

    select
        model_name,
        model_version,
        period_label,
        min(release_year) as release_year,
        count(*) as matched_pairs,
        count(distinct stream_id, item_index) as matched_predictions,
        sum(abs(actual - predicted)) as sum_abs_error,
        sum((actual - predicted) * (actual - predicted)) as sum_sq_error,
        sum(actual) as sum_actual,
        sum(actual * actual) as sum_sq_actual,
        avg(actual) as mean_actual,
        avg(predicted) as mean_predicted

    from periods
    group by model_name, model_version, period_label

)

select
    model_name,
    model_version,
    period_label,
    release_year,
    matched_pairs,
    matched_predictions,
    mean_actual,
    mean_predicted,
    sum_abs_error / matched_pairs as mae,
    sqrt(sum_sq_error / matched_pairs) as rmse,
    case
        when matched_pairs >= 2
            then 1 - sum_sq_error / nullif(
                sum_sq_actual - sum_actual * sum_actual / matched_pairs, 0
            )
    end as r2

from sums
