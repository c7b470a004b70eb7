"""Rolling-origin backtest: the evaluation that mirrors serving.

A forecast is asked for a release the data does not hold yet, knowing only
the past. For each origin year O (ORIGINS), every candidate is fitted on the
releases before O and forecasts the releases of O, O+1 and O+2 (horizons 1,
2 and 3). Every feature of a test row is computed by `ml.modeling.point_in_time`
from the releases before O only: the history object is built from the train
rows alone, so nothing of year O or later can reach a test row (a test
perturbs those years and checks).

Every test row is scored once per request shape (`ml.modeling.shapes`): as
a full request, without a platforms list, without a title, and without a
title under a publisher the model never saw. Scores are log1p R², MAE and
RMSE per shape, origin and horizon, for the model and for the baselines of
`ml.modeling.evaluate` (median, the original label-encoded forest, HistGB
on the four request fields), each fed the same shaped rows. The model's
residuals of every shape are kept: `ml.modeling.intervals` calibrates the
served intervals on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from threadpoolctl import threadpool_limits

from ml import features
from ml.features import ModelSpec
from ml.modeling import pipelines, shapes
from ml.modeling.baselines import BASELINES
from ml.modeling.point_in_time import HORIZON_YEARS, PointInTime, with_history
from ml.modeling.train import fit_pipeline

ORIGINS = tuple(range(2009, 2015))
HORIZONS = tuple(range(1, HORIZON_YEARS + 1))
MODEL = "model"
SCORE_COLUMNS = ("shape", "origin", "horizon", "candidate", "n", "r2", "mae", "rmse")


@dataclass
class Backtest:
    """Scores per origin, horizon and candidate, and the model's residuals."""

    model_name: str
    scores: pd.DataFrame
    residuals: pd.DataFrame

    def by_horizon(self) -> pd.DataFrame:
        """Mean over origins of each candidate's scores on full requests, per
        horizon and overall."""
        full = self.scores[self.scores["shape"] == shapes.FULL]
        per_horizon = full.groupby(["candidate", "horizon"], sort=False)[
            ["n", "r2", "mae", "rmse"]
        ].mean().reset_index()
        overall = per_horizon.groupby("candidate", sort=False)[["n", "r2", "mae", "rmse"]].mean()
        overall = overall.reset_index().assign(horizon="mean")
        table = pd.concat([per_horizon.astype({"horizon": str}), overall], ignore_index=True)
        return table.sort_values(["candidate", "horizon"], key=_candidate_order).reset_index(drop=True)

    def by_shape(self) -> pd.DataFrame:
        """Per request shape: the model's and each baseline's mean R², MAE and
        RMSE over origins and horizons."""
        table = self.scores.groupby(["shape", "candidate"], sort=False)[
            ["n", "r2", "mae", "rmse"]
        ].mean().reset_index()
        order = {shape: i for i, shape in enumerate(shapes.SHAPES)}
        return table.sort_values(
            ["shape", "candidate"],
            key=lambda c: c.map(order) if c.name == "shape" else _candidate_order(c),
        ).reset_index(drop=True)

    @property
    def metrics(self) -> dict[str, float]:
        """`backtest_<metric>_mean`, `backtest_r2_h<h>` and, for each baseline,
        `baseline_<name>_backtest_<metric>_mean` (full requests); per shape
        `backtest_shape_<shape>_<r2|mae>_mean` and the shape baseline's
        `baseline_<name>_backtest_shape_<shape>_r2_mean`; and
        `backtest_r2_shapes_mean`, the shapes' weighted mean R² the gate reads."""
        table = self.by_horizon()
        flat: dict[str, float] = {}
        for row in table.itertuples(index=False):
            prefix = "backtest" if row.candidate == MODEL else f"baseline_{row.candidate}_backtest"
            if row.horizon == "mean":
                for metric in ("r2", "mae", "rmse"):
                    flat[f"{prefix}_{metric}_mean"] = float(getattr(row, metric))
            else:
                flat[f"{prefix}_r2_h{row.horizon}"] = float(row.r2)
        for row in self.by_shape().itertuples(index=False):
            if row.candidate == MODEL:
                flat[f"backtest_shape_{row.shape}_r2_mean"] = float(row.r2)
                flat[f"backtest_shape_{row.shape}_mae_mean"] = float(row.mae)
            elif row.candidate == shapes.BASELINE:
                flat[f"baseline_{row.candidate}_backtest_shape_{row.shape}_r2_mean"] = float(row.r2)
        scored = [shape for shape in shapes.SHAPES if f"backtest_shape_{shape}_r2_mean" in flat]
        if scored:
            flat["backtest_r2_shapes_mean"] = float(
                sum(shapes.WEIGHTS[s] * flat[f"backtest_shape_{s}_r2_mean"] for s in scored)
                / sum(shapes.WEIGHTS[s] for s in scored)
            )
        flat["backtest_rows"] = float((self.residuals["shape"] == shapes.FULL).sum())
        return flat


def _candidate_order(column: pd.Series) -> pd.Series:
    if column.name == "candidate":
        return column.map(lambda c: (0 if c == MODEL else 1, c))
    return column


def origin_split(
    spec: ModelSpec, frame: pd.DataFrame, platforms: pd.DataFrame, origin: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train rows (years before `origin`) and test rows (its HORIZONS years),
    the test rows' features recomputed from the train rows alone."""
    rows = features.training_rows(spec.name, frame)
    year = rows["year"].astype("int64")
    train = rows[year < origin].reset_index(drop=True)
    test = rows[(year >= origin) & (year < origin + len(HORIZONS))].reset_index(drop=True)
    test = with_history(test, PointInTime(train, platforms), origin)
    test["horizon"] = test["year"].astype("int64") - origin + 1
    return train, test


def _scores(origin: int, candidate: str, test: pd.DataFrame, predicted: np.ndarray) -> list[dict]:
    rows = []
    actual = test["log_global_sales"].astype("float64").to_numpy()
    for (shape, horizon), index in test.groupby(["shape", "horizon"], sort=False).indices.items():
        if len(index) < 2:
            continue
        y, p = actual[index], predicted[index]
        rows.append({
            "shape": shape, "origin": origin, "horizon": horizon, "candidate": candidate,
            "n": len(index),
            "r2": float(r2_score(y, p)), "mae": float(mean_absolute_error(y, p)),
            "rmse": float(np.sqrt(mean_squared_error(y, p))),
        })
    return rows


def _seen(test: pd.DataFrame, train: pd.DataFrame, column: str) -> np.ndarray:
    known = set(train[column].astype(str))
    return (test[column].notna() & test[column].astype(str).isin(known)).to_numpy()


def as_shapes(spec: ModelSpec, test: pd.DataFrame) -> pd.DataFrame:
    """The test rows once per request shape (a `shape` column says which);
    a model without shapes gets them once, as full requests."""
    kinds = shapes.SHAPES if spec.request_shapes else (shapes.FULL,)
    return pd.concat(
        [shapes.shaped(test, shape).assign(shape=shape) for shape in kinds], ignore_index=True
    )


def run(
    spec: ModelSpec,
    frame: pd.DataFrame,
    platforms: pd.DataFrame,
    *,
    pipeline_factory: Callable[[ModelSpec], object] = pipelines.build,
    origins: tuple[int, ...] = ORIGINS,
    baselines: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Backtest:
    """Backtest `spec`'s pipeline (and the baselines) on the mart `frame`."""
    with threadpool_limits(limits=pipelines.THREADS):
        return _run(spec, frame, platforms, pipeline_factory, origins, baselines, progress)


def _run(spec, frame, platforms, pipeline_factory, origins, baselines, progress) -> Backtest:
    scores: list[dict] = []
    residuals: list[pd.DataFrame] = []
    for origin in origins:
        train, test = origin_split(spec, frame, platforms, origin)
        if train.empty or len(test) < 2:
            raise ValueError(
                f"backtest origin {origin}: {len(train)} train and {len(test)} test rows; "
                "the data must cover the years around every origin"
            )
        test = as_shapes(spec, test)
        pipeline = fit_pipeline(clone(pipeline_factory(spec)), spec, train)
        predicted = pipeline.predict(features.model_input(spec.name, test))
        scores += _scores(origin, MODEL, test, predicted)
        residuals.append(pd.DataFrame({
            "shape": test["shape"].to_numpy(),
            "origin": origin,
            "horizon": test["horizon"].to_numpy(),
            "platform": test["platform"].astype(str).to_numpy(),
            "genre": test["genre"].astype(str).to_numpy(),
            "platform_seen": _seen(test, train, "platform"),
            "publisher_seen": _seen(test, train, "publisher"),
            "actual": test["log_global_sales"].astype("float64").to_numpy(),
            "predicted": predicted,
        }))
        if baselines:
            for name, baseline in BASELINES[spec.name].items():
                scores += _scores(origin, name, test, baseline(spec, train, test))
        if progress:
            model = [s for s in scores if s["origin"] == origin and s["candidate"] == MODEL
                     and s["shape"] == shapes.FULL]
            progress(
                f"backtest origin {origin}: {len(train):,} train rows, "
                f"{(test['shape'] == shapes.FULL).sum():,} test rows, "
                "model R² by horizon " + ", ".join(f"{s['r2']:.3f}" for s in model)
            )
    return Backtest(
        model_name=spec.name,
        scores=pd.DataFrame(scores, columns=list(SCORE_COLUMNS)),
        residuals=pd.concat(residuals, ignore_index=True),
    )
