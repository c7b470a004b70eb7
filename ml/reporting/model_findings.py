"""The report's model findings: each registered champion, judged on the mart.

For every model the champion pipeline comes from the registry, its recorded
scores (model and baselines) from its MLflow run, and the rest is computed
again on the test split of the current ML mart: permutation importance (the
drop in held-out R² when one input is shuffled, which unlike impurity
importance is measured on unseen rows and is not inflated for high-cardinality
categories), residuals, and metrics per platform, genre and decade.

A model without a champion yields `MissingChampion`, so a report of a
warehouse that was never trained on still builds and says why that part is
empty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.inspection import permutation_importance
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from ml import features
from ml.modeling import champions, evaluate, pipelines
from ml.modeling.train import fit_pipeline, split_rows
from ml.settings import Settings

# Rows permutation importance scores at most: the estimate is stable well
# before that, and the report must not take longer than training.
IMPORTANCE_MAX_ROWS = 3000


@dataclass(frozen=True)
class ModelFindings:
    """What the report shows about one champion."""

    model_name: str
    version: str
    run_id: str
    held_out_metric: str
    scores: pd.DataFrame
    importance: pd.DataFrame
    actual: np.ndarray
    predicted: np.ndarray
    segments: pd.DataFrame

    @property
    def scale(self) -> str:
        """The unit of `actual`/`predicted` (the model's training scale)."""
        if features.spec(self.model_name).log_label:
            return "ln(1 + global sales)"
        return "global sales, millions"


@dataclass(frozen=True)
class MissingChampion:
    """No champion to report on, and why (the registry's own message)."""

    model_name: str
    reason: str


def champion_findings(
    model_name: str, settings: Settings, mart: pd.DataFrame
) -> ModelFindings | MissingChampion:
    """Findings for the registered champion of `model_name` on `mart`."""
    try:
        champion = champions.load_champion_with_info(model_name, settings)
    except champions.NoChampionError as exc:
        return MissingChampion(model_name, str(exc))
    info = champion.info
    return findings(
        model_name, champion.pipeline, info.metrics, mart,
        version=info.version, run_id=info.run_id,
    )


def findings(
    model_name: str,
    pipeline: Pipeline,
    run_metrics: dict[str, float],
    mart: pd.DataFrame,
    *,
    version: str = "",
    run_id: str = "",
) -> ModelFindings:
    """Score `pipeline` on the test rows of its served split of `mart`.

    A champion fitted on every labelled row (`fit_on_all`) has seen those
    rows: a copy refitted on the split's train rows is scored instead, as
    `ml.modeling.evaluate` does.
    """
    spec = features.spec(model_name)
    test = split_rows(spec, mart, spec.split, "test")
    if test.empty:
        raise ValueError(
            f"{model_name}: the ML mart has no test rows in {spec.split!r}; "
            "rebuild the warehouse (make pipeline)"
        )
    if spec.fit_on_all:
        with threadpool_limits(limits=1):
            pipeline = fit_pipeline(clone(pipeline), spec, split_rows(spec, mart, spec.split, "train"))
    inputs = features.model_input(model_name, test)
    actual = features.label(model_name, test)
    # Permutation importance is dozens of small predicts; OpenMP threads per
    # predict (histogram boosting) cost more than they save on a few thousand
    # rows, and on a busy 2-core machine made the report ten times slower.
    with threadpool_limits(limits=1):
        predicted = pipeline.predict(inputs)
        importance = importance_table(pipeline, inputs, actual)
    return ModelFindings(
        model_name=model_name,
        version=version,
        run_id=run_id,
        held_out_metric=spec.held_out_metric,
        scores=recorded_scores(model_name, run_metrics),
        importance=importance,
        actual=actual.to_numpy(),
        predicted=np.asarray(predicted, dtype=float),
        segments=evaluate._segments(spec, test, predicted),
    )


def importance_table(pipeline: Pipeline, inputs: pd.DataFrame, actual: pd.Series) -> pd.DataFrame:
    """Permutation importance (R² drop, mean and std over repeats) per input.

    Columns match `Evaluation.importance`, so `ml.modeling.plots.importance_figure`
    draws both; impurity importance is added when the final step has one.
    """
    result = permutation_importance(
        pipeline, inputs, actual, scoring="r2",
        n_repeats=evaluate.PERMUTATION_REPEATS,
        random_state=pipelines.SEED,
        max_samples=min(len(inputs), IMPORTANCE_MAX_ROWS),
    )
    table = pd.DataFrame(
        {
            "feature": inputs.columns,
            "permutation_r2_drop": result.importances_mean,
            "permutation_std": result.importances_std,
        }
    )
    whole = pipelines.final_pipeline(pipeline)
    model = whole.steps[-1][1]
    if hasattr(model, "feature_importances_") and hasattr(whole[:-1], "get_feature_names_out"):
        impurity = dict(zip(whole[:-1].get_feature_names_out(), model.feature_importances_))
        if set(table.feature) <= set(impurity):
            table["impurity"] = table.feature.map(impurity)
    return table.sort_values("permutation_r2_drop", ascending=False).reset_index(drop=True)


def recorded_scores(model_name: str, run_metrics: dict[str, float]) -> pd.DataFrame:
    """Test metrics of the model and its baselines per split, from run metrics.

    Names follow `Evaluation.metrics`: `<split>_test_<metric>` for the model,
    `baseline_<name>_<split>_test_<metric>` for baselines, and split
    `backtest` from `backtest_<metric>_mean`. One row per (split, candidate)
    that has any metric; empty when the run has none.
    """
    spec = features.spec(model_name)
    metrics = [*evaluate.METRICS, "mae_millions"]
    candidates = ["model", *evaluate.BASELINES[model_name]]
    rows = []
    for split in (s.removeprefix("split_") for s in spec.splits):
        for candidate in candidates:
            prefix = f"{split}_test_" if candidate == "model" else f"baseline_{candidate}_{split}_test_"
            values = {m: run_metrics.get(prefix + m) for m in metrics}
            if any(v is not None for v in values.values()):
                rows.append({"split": split, "candidate": candidate, **values})
    # The rolling-origin backtest (ml.modeling.backtest), mean over origins and horizons.
    for candidate in candidates:
        prefix = "backtest_" if candidate == "model" else f"baseline_{candidate}_backtest_"
        values = {m: run_metrics.get(f"{prefix}{m}_mean") for m in ("rmse", "mae", "r2")}
        if any(v is not None for v in values.values()):
            rows.append({"split": "backtest", "candidate": candidate, **values})
    columns = ["split", "candidate", *metrics]
    return pd.DataFrame(rows, columns=columns).dropna(axis="columns", how="all")
