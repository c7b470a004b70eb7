"""The training reference of each model version, and which versions serve.

Drift is computed in the warehouse (the dbt models under `*/monitoring/`),
against a reference written here when a version is registered: for every
feature of the model (`ml.features`), the distribution over the rows the
version was fitted on.
The mart changes with every load, so the rows a champion learnt from cannot
be recomputed later; the reference is kept per (model, version) in
`<db>_raw.raw_training_reference` (docs block drift_reference):

- numbers: cut at the training deciles into at most `NUMERIC_BINS`
  intervals (lower, upper], the outer ones open-ended;
- categories: the `TOP_CATEGORIES` most frequent values are bins of their
  own, the others share `(other)`; every value seen is listed, so a current
  value is either a known member or unseen;
- missing values: the bin `(missing)`.

`record_champions` copies the registry's `champion` aliases into
`<db>_raw.raw_model_champions`, which tells the drift models whose
reference to compare with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import sqlalchemy as sa

from ml import features
from ml.features import Feature, ModelSpec
from ml.modeling import champions
from ml.modeling.train import data_digest, fitting_rows
from ml.settings import Settings
from ml.warehouse import landing

NUMERIC_BINS = 10
TOP_CATEGORIES = 20
MISSING = "(missing)"
OTHER = "(other)"
# Labels the drift models add on the current side; no category may take them.
RESERVED = (MISSING, OTHER, "(unseen)")
REFERENCE_COLUMNS = (
    "feature",
    "feature_kind",
    "member",
    "bin_label",
    "bin_order",
    "lower_bound",
    "upper_bound",
    "reference_rows",
)


@dataclass(frozen=True)
class VersionFacts:
    """A registered version and the data it was trained on."""

    model_name: str
    model_version: int
    run_id: str
    data_digest: str


def _category_bins(feature: Feature, values: pd.Series) -> list[dict]:
    present = values.dropna()
    clash = sorted(set(present) & set(RESERVED))
    if clash:
        raise ValueError(
            f"feature {feature.name!r} has the value(s) {clash}, reserved for drift bins"
        )
    counts = present.value_counts()
    # Most frequent first; ties in name order, so the bins do not depend on
    # row order.
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    rows = []
    for rank, (value, count) in enumerate(ordered):
        own_bin = rank < TOP_CATEGORIES
        rows.append(
            dict(
                member=value,
                bin_label=value if own_bin else OTHER,
                bin_order=rank if own_bin else TOP_CATEGORIES,
                lower_bound=None,
                upper_bound=None,
                reference_rows=int(count),
            )
        )
    return rows


def _label(lower: float | None, upper: float | None) -> str:
    left = "-inf" if lower is None else f"{lower:.6g}"
    right = "+inf" if upper is None else f"{upper:.6g}"
    return f"({left}, {right}{')' if upper is None else ']'}"


def _number_bins(feature: Feature, values: pd.Series) -> list[dict]:
    present = values.dropna().to_numpy(dtype="float64")
    quantiles = np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1]
    edges = sorted(set(np.quantile(present, quantiles).tolist())) if len(present) else []
    bounds = [None, *edges, None]
    rows = []
    for order, (lower, upper) in enumerate(zip(bounds[:-1], bounds[1:])):
        inside = np.ones(len(present), dtype=bool)
        if lower is not None:
            inside &= present > lower
        if upper is not None:
            inside &= present <= upper
        rows.append(
            dict(
                member=_label(lower, upper),
                bin_label=_label(lower, upper),
                bin_order=order,
                lower_bound=lower,
                upper_bound=upper,
                reference_rows=int(inside.sum()),
            )
        )
    labels = [row["member"] for row in rows]
    if len(set(labels)) != len(labels):
        for row in rows:
            row["member"] = row["bin_label"] = (
                f"({row['lower_bound']!r}, {row['upper_bound']!r}]"
            )
    return rows


def profile(spec: ModelSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """The reference bins of `spec`'s features over the rows the served model
    was fitted on (every labelled row, or its split's train rows).

    One row per (feature, member), columns `REFERENCE_COLUMNS`; the rows are
    exactly those `ml.modeling.train.fit` learns from.
    """
    train = fitting_rows(spec, frame)
    inputs = features.model_input(spec.name, train)
    rows = []
    for feature in spec.features:
        values = inputs[feature.name]
        bins = (_category_bins if feature.kind == "category" else _number_bins)(feature, values)
        missing = int(values.isna().sum())
        if missing:
            bins.append(
                dict(
                    member=MISSING,
                    bin_label=MISSING,
                    bin_order=len(bins) + 1,
                    lower_bound=None,
                    upper_bound=None,
                    reference_rows=missing,
                )
            )
        rows += [dict(feature=feature.name, feature_kind=feature.kind, **row) for row in bins]
    return pd.DataFrame(rows, columns=list(REFERENCE_COLUMNS))


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def record_reference(settings: Settings, facts: VersionFacts, frame: pd.DataFrame) -> int:
    """Write the reference of a registered version trained on `frame`.

    Idempotent: a version's reference is written once (INSERT IGNORE on the
    primary keys); a rerun for the same version writes nothing new. A
    reference recorded for the same model and version number by another
    MLflow run (the registry was reset while the warehouse was kept) is
    replaced: version numbers mean the current registry's versions. Returns
    the number of reference rows the version has.
    """
    spec = features.spec(facts.model_name)
    bins = profile(spec, frame)
    train_rows = len(fitting_rows(spec, frame))
    version_row = dict(
        model_name=facts.model_name,
        model_version=facts.model_version,
        run_id=facts.run_id,
        data_digest=facts.data_digest,
        train_split="all" if spec.fit_on_all else spec.split,
        train_rows=train_rows,
        recorded_at=_now(),
    )
    reference_rows = [
        {"model_name": facts.model_name, "model_version": facts.model_version, **row}
        for row in bins.astype(object).where(bins.notna(), None).to_dict("records")
    ]
    columns = ("model_name", "model_version", *REFERENCE_COLUMNS)
    key = "model_name = :model_name and model_version = :model_version"
    with landing.transaction(settings) as connection:
        recorded_run = connection.execute(
            sa.text(
                f"select run_id from {landing.table(settings, 'raw_model_versions')} "
                f"where {key}"
            ),
            version_row,
        ).scalar()
        if recorded_run not in (None, facts.run_id):
            for table in ("raw_model_versions", "raw_training_reference"):
                connection.execute(
                    sa.text(f"delete from {landing.table(settings, table)} where {key}"),
                    version_row,
                )
        connection.execute(
            sa.text(
                f"insert ignore into {landing.table(settings, 'raw_model_versions')} "
                "(model_name, model_version, run_id, data_digest, train_split, "
                "train_rows, recorded_at) values (:model_name, :model_version, "
                ":run_id, :data_digest, :train_split, :train_rows, :recorded_at)"
            ),
            version_row,
        )
        connection.execute(
            sa.text(
                f"insert ignore into {landing.table(settings, 'raw_training_reference')} "
                f"({', '.join(columns)}) values ({', '.join(':' + c for c in columns)})"
            ),
            reference_rows,
        )
        return connection.execute(
            sa.text(
                f"select count(*) from {landing.table(settings, 'raw_training_reference')} "
                f"where {key}"
            ),
            version_row,
        ).scalar_one()


def recorded_runs(settings: Settings) -> set[str]:
    """MLflow run ids of the versions whose reference is in the warehouse."""
    with landing.transaction(settings) as connection:
        rows = connection.execute(
            sa.text(f"select run_id from {landing.table(settings, 'raw_model_versions')}")
        )
        return {run_id for (run_id,) in rows}


def record_champions(settings: Settings) -> dict[str, VersionFacts | None]:
    """Copy the registry's champion of each model into the warehouse.

    Models without a champion are removed from `raw_model_champions` (the
    drift models then have nothing to compare for them).
    """
    mlflow_client = champions.client(settings)
    served: dict[str, VersionFacts | None] = {}
    for model_name in features.MODEL_NAMES:
        version = champions.current_champion(mlflow_client, model_name)
        if version is None:
            served[model_name] = None
            continue
        run = mlflow_client.get_run(version.run_id)
        served[model_name] = VersionFacts(
            model_name=model_name,
            model_version=int(version.version),
            run_id=version.run_id,
            data_digest=run.data.tags.get("data_digest", ""),
        )
    champions_table = landing.table(settings, "raw_model_champions")
    with landing.transaction(settings) as connection:
        connection.execute(sa.text(f"delete from {champions_table}"))
        for facts in served.values():
            if facts is not None:
                connection.execute(
                    sa.text(
                        f"insert into {champions_table} (model_name, model_version, "
                        "recorded_at) values (:model_name, :model_version, :recorded_at)"
                    ),
                    dict(
                        model_name=facts.model_name,
                        model_version=facts.model_version,
                        recorded_at=_now(),
                    ),
                )
    return served


def backfill_references(
    settings: Settings,
    champions: dict[str, VersionFacts | None],
    read_mart: Callable[[], pd.DataFrame],
    log: Callable[[str], object] = print,
) -> list[str]:
    """Write missing champion references from the mart when it is unchanged.

    A champion registered before references were recorded has none. If the
    mart still holds the data it was trained on (same data digest), the
    reference is recomputed from it; otherwise drift cannot be measured for
    it until the next retrain. Returns one sentence per champion that still
    lacks a reference.
    """
    recorded = recorded_runs(settings)
    missing = [
        facts
        for facts in champions.values()
        if facts is not None and facts.run_id not in recorded
    ]
    if not missing:
        return []
    frame = read_mart()
    problems = []
    for facts in missing:
        digest = data_digest(features.spec(facts.model_name), frame)
        if digest == facts.data_digest:
            record_reference(settings, facts, frame)
            log(
                f"[drift] recorded the missing reference of {facts.model_name} "
                f"version {facts.model_version} from the unchanged mart"
            )
        else:
            problems.append(
                f"{facts.model_name} version {facts.model_version} has no training "
                f"reference and the mart changed since it was trained (data digest "
                f"{facts.data_digest or 'unknown'}, now {digest}): its drift is not "
                "measured until the next retrain"
            )
    return problems
