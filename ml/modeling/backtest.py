"""Rolling-origin backtest: the evaluation that mirrors serving.

A forecast is asked for a release the data does not hold yet, knowing only
the past. For each origin year O (ORIGINS), every candidate is fitted on the
releases before O and forecasts the releases of O, O+1 and O+2 (horizons 1,
2 and 3). Every feature of a test row is computed by `ml.modeling.point_in_time`
from the releases before O only: the history object is built from the train
rows alone, so nothing of year O or later can reach a test row (a test
perturbs those years and checks).

Scores are log1p R², MAE and RMSE per origin and horizon, for the model and
for the baselines of `ml.modeling.evaluate` (median, the original
label-encoded forest, HistGB on the four request fields). The model's
residuals are kept: `ml.modeling.intervals` calibrates the served intervals
on them.
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
from ml.modeling import pipelines
from ml.modeling.baselines import BASELINES
from ml.modeling.point_in_time import PointInTime, with_history
from ml.modeling.train import fit_pipeline

ORIGINS = tuple(range(2009, 2015))
HORIZONS = (1, 2, 3)
MODEL = "model"
SCORE_COLUMNS = ("origin", "horizon", "candidate", "n", "r2", "mae", "rmse")


@dataclass
class Backtest:
    """Scores per origin, horizon and candidate, and the model's residuals."""

    model_name: str
    scores: pd.DataFrame
    residuals: pd.DataFrame

    def by_horizon(self) -> pd.DataFrame:
        """Mean over origins of each candidate's scores, per horizon and overall."""
        per_horizon = self.scores.groupby(["candidate", "horizon"], sort=False)[
            ["n", "r2", "mae", "rmse"]
        ].mean().reset_index()
        overall = per_horizon.groupby("candidate", sort=False)[["n", "r2", "mae", "rmse"]].mean()
        overall = overall.reset_index().assign(horizon="mean")
        table = pd.concat([per_horizon.astype({"horizon": str}), overall], ignore_index=True)
        return table.sort_values(["candidate", "horizon"], key=_candidate_order).reset_index(drop=True)

    @property
    def metrics(self) -> dict[str, float]:
        """`backtest_<metric>_mean`, `backtest_r2_h<h>` and, for each baseline,
        `baseline_<name>_backtest_<metric>_mean`."""
        table = self.by_horizon()
        flat: dict[str, float] = {}
        for row in table.itertuples(index=False):
            prefix = "backtest" if row.candidate == MODEL else f"baseline_{row.candidate}_backtest"
            if row.horizon == "mean":
                for metric in ("r2", "mae", "rmse"):
                    flat[f"{prefix}_{metric}_mean"] = float(getattr(row, metric))
            else:
                flat[f"{prefix}_r2_h{row.horizon}"] = float(row.r2)
        flat["backtest_rows"] = float(len(self.residuals))
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
    for horizon in HORIZONS:
        mask = test["horizon"].to_numpy() == horizon
        if mask.sum() < 2:
            continue
        y, p = actual[mask], predicted[mask]
        rows.append({
            "origin": origin, "horizon": horizon, "candidate": candidate, "n": int(mask.sum()),
            "r2": float(r2_score(y, p)), "mae": float(mean_absolute_error(y, p)),
            "rmse": float(np.sqrt(mean_squared_error(y, p))),
        })
    return rows


def _seen(test: pd.DataFrame, train: pd.DataFrame, column: str) -> np.ndarray:
    return test[column].astype(str).isin(set(train[column].astype(str))).to_numpy()


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
        pipeline = fit_pipeline(clone(pipeline_factory(spec)), spec, train)
        predicted = pipeline.predict(features.model_input(spec.name, test))
        scores += _scores(origin, MODEL, test, predicted)
        residuals.append(pd.DataFrame({
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
            model = [s for s in scores if s["origin"] == origin and s["candidate"] == MODEL]
            progress(
                f"backtest origin {origin}: {len(train):,} train rows, {len(test):,} test rows, "
                "model R² by horizon " + ", ".join(f"{s['r2']:.3f}" for s in model)
            )
    return Backtest(
        model_name=spec.name,
        scores=pd.DataFrame(scores, columns=list(SCORE_COLUMNS)),
        residuals=pd.concat(residuals, ignore_index=True),
    )
