"""A registered model version, loaded and ready to predict.

`load(name, version, settings)` fetches the pipeline from the MLflow
registry and tries to compile it (`serve.model.compiled`); the compiled predictor
is kept only if it reproduces `pipeline.predict` exactly, row by row and as
a batch, on a sample drawn from the feature schema. A pipeline that cannot
be compiled is served as is, on the frame `ml.features.model_input` builds,
as in training.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from ml.features import model_input, spec, to_sales
from ml.modeling import champions
from ml.modeling.intervals import INTERVAL_CALIBRATION_TAG, Calibration
from ml.modeling.names import NAME_REFERENCE_TAG, NameReference, Resolver
from ml.modeling import shapes
from ml.modeling.pipelines import known_categories
from ml.modeling.point_in_time import (
    HORIZON_YEARS,
    LOOKED_UP,
    PLATFORM_REFERENCE_TAG,
    PointInTime,
    platforms_of,
    reference_from_json,
)
from ml.settings import Settings
from serve.model.compiled import (
    CompiledPredictor,
    NotCompilable,
    RoutedPredictor,
    compile_pipeline,
    verify,
)

log = logging.getLogger(__name__)

# Rows of the schema-driven sample a compiled predictor must reproduce.
VERIFY_ROWS = 256
UNSEEN_PROBE = "\x00unseen category probe"


class NoChampion(LookupError):
    """The registry has no champion for a model (train first)."""


@dataclass(frozen=True)
class ServedModel:
    """One model version with what `/model` reports about it."""

    name: str
    version: str
    run_id: str
    pipeline: Any
    compiled: CompiledPredictor | RoutedPredictor | None
    fast_path_detail: str
    known: Mapping[str, frozenset[str]]
    trained_at: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    data_digest: str | None = None
    point_in_time: PointInTime | None = None
    point_in_time_source: str | None = None
    calibration: Calibration | None = None
    trained_platforms: frozenset[str] = frozenset()
    tags: Mapping[str, str] = field(default_factory=dict)
    names: NameReference | None = None

    @property
    def data_last_year(self) -> int | None:
        """The last complete year of the data the model was fitted on."""
        value = self.tags.get("data_last_year", "")
        return int(value) if value.isdigit() else None

    @property
    def last_forecast_year(self) -> int | None:
        """The last year this model forecasts (None: a model that forecasts
        nothing, or no horizon recorded)."""
        last = self.data_last_year
        return None if last is None or self.point_in_time is None else last + HORIZON_YEARS

    def beyond_horizon(self, record: Mapping[str, object]) -> str | None:
        """Why a request's year is past what the model can place, or None."""
        last = self.last_forecast_year
        if last is None or int(record["year"]) <= last:
            return None
        return (f"year {int(record['year'])} is past the last year this model forecasts, "
                f"{last} ({HORIZON_YEARS} years after {self.data_last_year}, the data's last "
                "complete year; the backtest measures no further)")

    def complete(self, record: Mapping[str, object]) -> dict[str, object]:
        """The record with its point-in-time features looked up (prerelease)."""
        if self.point_in_time is None:
            return dict(record)
        return self.point_in_time.complete(record)

    def complete_many(self, records: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
        """`complete` of each record, looked up together (batches)."""
        if self.point_in_time is None:
            return [dict(record) for record in records]
        return self.point_in_time.complete_many(records)

    def horizon(self, record: Mapping[str, object]) -> int | None:
        """Years between the data's last complete year and the forecast year."""
        last = self.data_last_year
        return None if last is None else int(record["year"]) - last

    def shape(self, record: Mapping[str, object]) -> str | None:
        """The request shape of a completed record, for a model scored by shape."""
        if not spec(self.name).request_shapes:
            return None
        return shapes.shape_of(record, self.known.get("publisher", frozenset()))

    def interval(self, record: Mapping[str, object], sales: float) -> dict[str, float] | None:
        """The calibrated interval around a forecast of `sales` millions."""
        if self.calibration is None:
            return None
        seen = record.get("platform") in self.trained_platforms
        return self.calibration.interval(float(np.log1p(sales)), record.get("genre"), seen,
                                         self.shape(record) or shapes.FULL)

    def predict_one(self, record: Mapping[str, object]) -> float:
        """Global sales for one record keyed by feature name."""
        if self.compiled is not None:
            raw = np.array([self.compiled.predict_one(record)])
        else:
            raw = self.pipeline.predict(model_input(self.name, [record]))
        return float(to_sales(self.name, raw)[0])

    def predict_many(self, records: Sequence[Mapping[str, object]]) -> np.ndarray:
        """Global sales for many records in one call."""
        if self.compiled is not None:
            raw = self.compiled.predict_many(records)
        else:
            raw = self.pipeline.predict(model_input(self.name, records))
        return to_sales(self.name, raw)

    @cached_property
    def spellings(self) -> Resolver:
        """A request's names resolved to `known` ones (the name reference,
        then case), and suggestions for the rest (`ml.modeling.names`)."""
        return Resolver(self.known, self.names)

    def unseen(self, record: Mapping[str, object]) -> list[str]:
        """Feature names whose category the model never saw in training."""
        return [
            column
            for column, seen in self.known.items()
            if record.get(column) is not None and record[column] not in seen
        ]

    def unseen_many(self, records: Sequence[Mapping[str, object]]) -> list[list[str]]:
        """`unseen` of each record, column by column (cheaper for batches)."""
        flagged: list[list[str]] = [[] for _ in records]
        for column, seen in self.known.items():
            for i, record in enumerate(records):
                value = record.get(column)
                if value is not None and value not in seen:
                    flagged[i].append(column)
        return flagged

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "trained_at": self.trained_at,
            "metrics": dict(self.metrics),
            "data_digest": self.data_digest,
            "fast_path": self.compiled is not None,
            "fast_path_detail": self.fast_path_detail,
            "features": spec(self.name).columns,
            "point_in_time_source": self.point_in_time_source,
            "fitted_rows": _int_tag(self.tags, "fitted_rows"),
            "fitted_years": self.tags.get("fitted_years") or None,
            "data_last_year": self.data_last_year,
            "last_forecast_year": self.last_forecast_year,
            "backtest": {k: v for k, v in self.metrics.items()
                         if k.startswith("backtest_") and not k.startswith("backtest_shape_")},
            "shapes": shapes.scores(self.metrics),
            "interval": None if self.calibration is None else {
                "level": self.calibration.level,
                "coverage": self.metrics.get("interval_coverage"),
                "median_width": self.metrics.get("interval_width_median"),
            },
        }


def champion_version(name: str, settings: Settings) -> str:
    """The version the `champion` alias points at, or `NoChampion`."""
    champion = champions.current_champion(champions.client(settings), name)
    if champion is None:
        # The registry's location goes to the log only: it is a path (or a DSN).
        log.warning("no %s of %s in the registry at %s", champions.CHAMPION, name,
                    settings.mlflow_tracking_uri)
        raise NoChampion(
            f"no {champions.CHAMPION!r} version of model {name!r} in the registry; "
            "run `make pipeline` first"
        )
    return str(champion.version)


def load(name: str, version: str, settings: Settings) -> ServedModel:
    """Load `name` version `version` from the registry and prepare it to serve."""
    champion = champions.load_version(name, version, settings)
    pipeline, info = champion.pipeline, champion.info
    _single_threaded(pipeline)
    compiled, detail = _compile_verified(name, pipeline)
    history, history_source = None, None
    known = dict(known_categories(pipeline))
    trained_platforms = known.get("platform", frozenset())
    names = _name_reference(info.tags)
    if any(column in LOOKED_UP for column in spec(name).columns):
        mart, history_source = _training_mart(info.tags, settings)
        reference = info.tags.get(PLATFORM_REFERENCE_TAG)
        platforms = reference_from_json(reference) if reference else platforms_of(mart)
        history = PointInTime(mart, platforms, names)
        # A platform of the reference is described by its attributes, not unseen.
        known["platform"] = trained_platforms | frozenset(history.platforms)
    calibration = info.tags.get(INTERVAL_CALIBRATION_TAG)
    log.info("loaded %s version %s (fast path: %s)", name, version, detail)
    return ServedModel(
        name=name,
        version=str(info.version),
        run_id=info.run_id,
        pipeline=pipeline,
        compiled=compiled,
        fast_path_detail=detail,
        known=known,
        trained_at=info.trained_at or None,
        metrics={k: float(v) for k, v in info.metrics.items()},
        data_digest=info.data_digest or None,
        point_in_time=history,
        point_in_time_source=history_source,
        calibration=Calibration.from_json(calibration) if calibration else None,
        trained_platforms=trained_platforms,
        tags=dict(info.tags),
        names=names,
    )


def _name_reference(tags: Mapping[str, str]) -> NameReference | None:
    """The name reference the version was registered with; a version from
    before names were stored matches by case only."""
    stored = tags.get(NAME_REFERENCE_TAG)
    if not stored:
        log.warning("%s: no %s tag; names are matched by case only",
                    tags.get("model_name"), NAME_REFERENCE_TAG)
        return None
    return NameReference.from_tag(stored)


def _int_tag(tags: Mapping[str, str], key: str) -> int | None:
    value = tags.get(key, "")
    return int(value) if value.isdigit() else None


def _training_mart(tags: Mapping[str, str], settings: Settings) -> tuple[pd.DataFrame, str]:
    """The mart rows the run was trained on, and where they were found.

    First the Redis snapshot the run names (`snapshot_key` tag, set by the
    training flow); once it has expired, the mart itself, read with the
    read-only user, noting whether it changed since (`mart_fingerprint`).
    """
    import redis

    from ml.warehouse import mart as warehouse
    from ml.warehouse import snapshot

    key = tags.get("snapshot_key", "")
    if key.startswith(snapshot.KEY_PREFIX):
        client = snapshot.connect(settings.redis_url)
        try:
            frame = snapshot.fetch(client, key)
        except redis.RedisError as error:
            log.warning("snapshot %s unreadable (%s); reading the mart instead", key, error)
            frame = None
        finally:
            client.close()
        if frame is not None:
            log.info("%s: point-in-time history from Redis snapshot %s", tags.get("model_name"), key)
            return frame, "Redis snapshot"
    frame = warehouse.read_ml_mart(settings)
    trained_on = tags.get("mart_fingerprint")
    now = warehouse.mart_fingerprint(settings)
    same = trained_on == now
    log.info("point-in-time history from the mart (fingerprint at training %s, now %s)",
             trained_on, now)
    return frame, "warehouse mart: " + ("as trained on" if same else "changed since training")


def _single_threaded(pipeline: Any) -> None:
    """Predict on the worker's own thread: workers already fill every core."""
    for step in getattr(pipeline, "named_steps", {}).values():
        for estimator in (step, getattr(step, "regressor_", None)):
            if estimator is not None and hasattr(estimator, "n_jobs"):
                estimator.n_jobs = 1


def _compile_verified(
    name: str, pipeline: Any
) -> tuple[CompiledPredictor | RoutedPredictor | None, str]:
    try:
        compiled = compile_pipeline(pipeline)
    except NotCompilable as reason:
        log.warning("%s: single predictions use pipeline.predict: %s", name, reason)
        return None, f"not compiled: {reason}"
    sample = model_input(name, schema_sample(name, known_categories(pipeline)))
    ok, detail = verify(compiled, pipeline, sample)
    if not ok:
        log.warning("%s: compiled predictor disagrees (%s); using pipeline.predict", name, detail)
        return None, f"compiled predictor rejected: {detail}"
    return compiled, f"compiled, verified: {detail}"


def schema_sample(
    name: str, known: Mapping[str, frozenset[str]], rows: int = VERIFY_ROWS, seed: int = 0
) -> list[dict[str, object]]:
    """Records spanning the schema: every known category, an unseen one,
    numbers across their allowed range, and missing optional values."""
    rng = np.random.default_rng(seed)
    records: list[dict[str, object]] = []
    for i in range(rows):
        record: dict[str, object] = {}
        for feature in spec(name).features:
            missing = not feature.required and i % 7 == 3
            if missing:
                record[feature.name] = None
            elif feature.kind == "category":
                values = sorted(known.get(feature.name, ())) + [UNSEEN_PROBE]
                record[feature.name] = values[(i * 7 + len(record)) % len(values)]
            else:
                low = 0.0 if feature.minimum is None else feature.minimum
                high = low + 100.0 if feature.maximum is None else feature.maximum
                # Mostly small values, where the training data and the splits are.
                record[feature.name] = float(low + (high - low) * rng.random() ** 4)
        records.append(record)
    return records

