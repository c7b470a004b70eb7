"""Held-out metrics, baselines, cross-validation and per-segment metrics.

Every score is one row of a tidy table (candidate, split, part, metric,
value); `Evaluation.metrics` flattens it into MLflow-friendly names:

- `<split>_<part>_<metric>` for the model, e.g. `time_test_r2`,
- `baseline_<name>_<split>_test_<metric>` for baselines,
- `cv_<metric>_mean` / `cv_<metric>_std` for 5-fold CV on the train rows,
- `<split>_<part>_rows` for row counts.

Splits are named after their mart column without the prefix: `split_time`
is `time`, `split_random` is `random`. Metrics are on the model's training
scale (log1p sales for `prerelease`); log-scale models also get `mae_millions`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    explained_variance_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)
from sklearn.model_selection import KFold, cross_validate
from threadpoolctl import threadpool_limits

from ml import features
from ml.markdown import frame_table
from ml.features import ModelSpec
from ml.modeling import backtest as rolling
from ml.modeling import intervals, pipelines, shapes
from ml.modeling.baselines import BASELINES
from ml.modeling.point_in_time import platforms_of
from ml.modeling.train import FittedModel, fit_pipeline, split_rows

METRICS = ("mse", "rmse", "mae", "r2", "explained_variance")
SEGMENT_DIMENSIONS = ("platform", "genre", "decade")
CV_FOLDS = 5
PERMUTATION_REPEATS = 5
# Segments smaller than this are flagged: their metrics are noise.
SMALL_SEGMENT = 30

def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """The original design's five metrics."""
    mse = mean_squared_error(y_true, y_pred)
    return {
        "mse": float(mse),
        "rmse": float(np.sqrt(mse)),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)),
        "explained_variance": float(explained_variance_score(y_true, y_pred)),
    }



@dataclass
class Evaluation:
    """Scores of one fitted model; `.metrics` is the flat dict MLflow logs."""

    model_name: str
    held_out_metric: str
    greater_is_better: bool
    scores: pd.DataFrame
    segments: pd.DataFrame
    importance: pd.DataFrame
    backtest: rolling.Backtest | None = None
    coverage: pd.DataFrame | None = None
    calibration: intervals.Calibration | None = None

    @property
    def metrics(self) -> dict[str, float]:
        flat: dict[str, float] = {}
        if self.backtest is not None:
            flat.update(self.backtest.metrics)
        if self.coverage is not None:
            overall = self.coverage[self.coverage.segment == "overall"].iloc[0]
            flat["interval_coverage"] = float(overall.coverage)
            flat["interval_width_median"] = float(overall.median_width)
            flat["interval_coverage_min_segment"] = float(
                intervals.worst_segment(self.coverage).coverage
            )
            for row in self.coverage[self.coverage.segment == "shape"].itertuples(index=False):
                flat[f"interval_coverage_shape_{row.value}"] = float(row.coverage)
        for row in self.scores.itertuples(index=False):
            if row.candidate == "cv":
                name = f"cv_{row.metric}_{row.part}"
            elif row.candidate == "model":
                name = f"{row.split}_{row.part}_{row.metric}"
            else:
                name = f"baseline_{row.candidate}_{row.split}_{row.part}_{row.metric}"
            flat[name] = float(row.value)
        return flat

    @property
    def held_out_value(self) -> float:
        return self.metrics[self.held_out_metric]

    def to_markdown(self) -> str:
        """A report for people: scores next to baselines, CV, segments."""
        test = self.scores[(self.scores.part == "test") & (self.scores.metric != "rows")]
        table = test.pivot_table(
            index=["split", "candidate"], columns="metric", values="value", sort=False
        ).reset_index()
        lines = [
            f"# {self.model_name}",
            "",
            f"Held-out metric for the champion gate: `{self.held_out_metric}` = "
            f"{self.held_out_value:.4f} ({'higher' if self.greater_is_better else 'lower'}"
            " is better).",
            "",
            *self._backtest_markdown(),
            "## Test scores next to baselines",
            "",
            frame_table(table),
            "",
            "## Cross-validation on the train rows "
            f"({CV_FOLDS}-fold, shuffled)",
            "",
            frame_table(
                self.scores[self.scores.candidate == "cv"]
                .pivot_table(index="metric", columns="part", values="value")
                .reset_index()
            ),
            "",
            "## Row counts",
            "",
            frame_table(
                self.scores[self.scores.metric == "rows"][["split", "part", "value"]]
            ),
            "",
            "## Permutation importance on the held-out rows",
            "",
            frame_table(self.importance),
            "",
            f"## Held-out metrics by segment (n < {SMALL_SEGMENT} flagged small)",
            "",
            frame_table(self.segments),
            "",
        ]
        return "\n".join(lines)


    def _backtest_markdown(self) -> list[str]:
        if self.backtest is None:
            return []
        lines = [
            "## Rolling-origin backtest next to baselines",
            "",
            f"Origins {min(self.backtest.scores.origin)}-{max(self.backtest.scores.origin)}: "
            "each candidate is fitted on the releases before the origin and forecasts "
            f"the {len(rolling.HORIZONS)} years from it, every feature computed from "
            "the years before the origin (log1p scale; scores averaged over origins).",
            "",
            frame_table(self.backtest.by_horizon()),
            "",
            "## The backtest by request shape",
            "",
            "Each test row scored as every request shape (`ml.modeling.shapes`): "
            + "; ".join(f"`{k}`: {v}" for k, v in shapes.DESCRIPTIONS.items())
            + ". Scores averaged over origins and horizons.",
            "",
            frame_table(self.backtest.by_shape()),
            "",
        ]
        if self.coverage is not None:
            lines += [
                f"## {self.calibration.level:.0%} prediction intervals on the backtest",
                "",
                "Conformal, calibrated per genre and seen/unseen platform; each origin's "
                "releases are covered by intervals calibrated on the other origins. "
                "Widths in millions of units.",
                "",
                frame_table(self.coverage),
                "",
            ]
        return lines


def _short(split: str) -> str:
    return split.removeprefix("split_")


def _score_rows(
    candidate: str, split: str, part: str, spec: ModelSpec, y_true: pd.Series, y_pred: np.ndarray
) -> list[dict[str, object]]:
    values = regression_metrics(y_true.to_numpy(), y_pred)
    if spec.log_label:
        values["mae_millions"] = float(
            mean_absolute_error(
                features.to_sales(spec.name, y_true.to_numpy()),
                features.to_sales(spec.name, y_pred),
            )
        )
    return [
        {"candidate": candidate, "split": _short(split), "part": part, "metric": k, "value": v}
        for k, v in values.items()
    ]


def _segments(spec: ModelSpec, test: pd.DataFrame, y_pred: np.ndarray) -> pd.DataFrame:
    """Held-out metrics per platform, genre and decade, with row counts."""
    frame = pd.DataFrame(
        {
            "actual": features.label(spec.name, test).to_numpy(),
            "predicted": y_pred,
            **{d: test[d].astype(str).to_numpy() for d in SEGMENT_DIMENSIONS},
        }
    )
    rows = []
    for dimension in SEGMENT_DIMENSIONS:
        for segment, group in frame.groupby(dimension, sort=True):
            error = group.predicted - group.actual
            r2 = (
                r2_score(group.actual, group.predicted)
                if len(group) > 1 and group.actual.nunique() > 1
                else np.nan
            )
            rows.append(
                {
                    "dimension": dimension,
                    "segment": segment,
                    "rows": len(group),
                    "small": len(group) < SMALL_SEGMENT,
                    "mean_actual": group.actual.mean(),
                    "bias": error.mean(),
                    "rmse": float(np.sqrt((error**2).mean())),
                    "mae": error.abs().mean(),
                    "r2": r2,
                }
            )
    return pd.DataFrame(rows)


def _importance(spec: ModelSpec, pipeline, test: pd.DataFrame) -> pd.DataFrame:
    """Permutation importance per input column (and impurity importance if any)."""
    inputs = features.model_input(spec.name, test)
    result = permutation_importance(
        pipeline,
        inputs,
        features.label(spec.name, test),
        scoring="r2",
        n_repeats=PERMUTATION_REPEATS,
        random_state=pipelines.SEED,
    )
    table = pd.DataFrame(
        {
            "feature": inputs.columns,
            "permutation_r2_drop": result.importances_mean,
            "permutation_std": result.importances_std,
        }
    )
    model = pipelines.regressor(pipeline)
    if hasattr(model, "feature_importances_"):
        names = pipelines.final_pipeline(pipeline).named_steps["encode"].get_feature_names_out()
        impurity = dict(zip(names, model.feature_importances_))
        table["impurity"] = table.feature.map(impurity)
    return table.sort_values("permutation_r2_drop", ascending=False).reset_index(drop=True)


def _cross_validation(fitted: FittedModel, train: pd.DataFrame) -> list[dict[str, object]]:
    spec = fitted.spec
    folds = KFold(CV_FOLDS, shuffle=True, random_state=pipelines.SEED)
    result = cross_validate(
        clone(fitted.pipeline),
        features.model_input(spec.name, train),
        features.label(spec.name, train),
        cv=folds,
        scoring={"r2": "r2", "rmse": "neg_root_mean_squared_error"},
    )
    r2, rmse = result["test_r2"], -result["test_rmse"]
    split = _short(spec.split)
    return [
        {"candidate": "cv", "split": split, "part": part, "metric": metric, "value": float(value)}
        for metric, values in (("r2", r2), ("rmse", rmse))
        for part, value in (("mean", values.mean()), ("std", values.std()))
    ]


def evaluate(
    fitted: FittedModel,
    frame: pd.DataFrame,
    platforms: pd.DataFrame | None = None,
    progress=None,
) -> Evaluation:
    """Score `fitted` on the held-out rows of `frame` and compare to baselines.

    The served pipeline is scored on its own split, unless it was fitted on
    every row (`fit_on_all`); for every other split a copy is refitted on
    that split's train rows, so the comparison is like for like. Baselines
    are scored on every split; CV runs on the first split's train rows.
    A `fit_on_all` model is also backtested (`ml.modeling.backtest`, with the
    platform reference `platforms`, by default recovered from `frame`) and
    its interval calibration and coverage come from the backtest residuals.
    """
    with threadpool_limits(limits=pipelines.THREADS):
        evaluation = _evaluate(fitted, frame)
    if fitted.spec.fit_on_all:
        reference = platforms_of(frame) if platforms is None else platforms
        result = rolling.run(fitted.spec, frame, reference, progress=progress)
        evaluation.backtest = result
        evaluation.calibration = intervals.calibrate(result.residuals)
        evaluation.coverage = intervals.coverage(result.residuals)
    return evaluation


def _evaluate(fitted: FittedModel, frame: pd.DataFrame) -> Evaluation:
    spec = fitted.spec
    scores: list[dict[str, object]] = []
    segments = importance = None
    for split in spec.splits:
        train = split_rows(spec, frame, split, "train")
        test = split_rows(spec, frame, split, "test")
        if test.empty:
            raise ValueError(
                f"{spec.name}: no held-out rows (column {split!r} has no 'test' value)"
            )
        pipeline = (
            fitted.pipeline
            if split == spec.split and not spec.fit_on_all
            else fit_pipeline(clone(fitted.pipeline), spec, train)
        )
        for part, rows in (("train", train), ("test", test)):
            predicted = pipeline.predict(features.model_input(spec.name, rows))
            actual = features.label(spec.name, rows)
            scores += _score_rows("model", split, part, spec, actual, predicted)
            scores.append(
                {"candidate": "model", "split": _short(split), "part": part,
                 "metric": "rows", "value": float(len(rows))}
            )
            if split == spec.split and part == "test":
                segments = _segments(spec, rows, predicted)
        for name, baseline in BASELINES[spec.name].items():
            scores += _score_rows(
                name, split, "test", spec, features.label(spec.name, test),
                baseline(spec, train, test),
            )
        if split == spec.split:
            importance = _importance(spec, pipeline, test)
            scores += _cross_validation(fitted, train)
    return Evaluation(
        model_name=spec.name,
        held_out_metric=spec.held_out_metric,
        greater_is_better=spec.greater_is_better,
        scores=pd.DataFrame(scores),
        segments=segments,
        importance=importance,
    )
