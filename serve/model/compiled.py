"""A fitted sklearn pipeline turned into plain numpy for one-row predictions.

`Pipeline.predict` on a single row spends ~3 ms in pandas and sklearn's input
checks before it reaches the trees, while the trees themselves take ~0.1 ms.
`compile_pipeline` reads the fitted steps once (encoder categories, imputer
statistics, every tree's node arrays) and returns a predictor that maps a
record `{feature: value}` to the same float `pipeline.predict` would return,
bit for bit: same float32 cast before each split, same NaN routing, same
summation order. Batches reuse the compiled transform (no pandas) and then
sklearn's own tree code, which beats a numpy walk once rows are many.

Only the two shapes `ml.modeling.pipelines` builds are understood: a
`ColumnTransformer` of an ordinal encoder (infrequent categories grouped or
not) and passthrough numbers, into a random forest or a histogram gradient
boosting (native categorical splits included). Anything else raises
`NotCompilable`, and the caller serves with `pipeline.predict` instead;
`verify` is the caller's proof that a compiled predictor agrees with the
pipeline before it is used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

from ml.modeling.pipelines import UNTITLED_WHEN_MISSING, ByRequestShape

Record = Mapping[str, object]
# One input column through its fitted step: a scalar in, a float out.
ColumnStep = Callable[[object], float]


class NotCompilable(Exception):
    """The pipeline holds a step this module does not reproduce."""


@dataclass(frozen=True)
class _Column:
    """One input column's way into the transformed row."""

    name: str
    step: ColumnStep
    position: int


class CompiledPredictor:
    """`predict_one(record)` equal to `pipeline.predict(frame_of([record]))[0]`,
    and `predict_many(records)` equal to `pipeline.predict(frame_of(records))`."""

    def __init__(
        self,
        columns: list[_Column],
        n_outputs: int,
        trees: _Forest | _Boosting,
        regressor: Any,
    ) -> None:
        self._columns = columns
        self._n_outputs = n_outputs
        self._trees = trees
        self._regressor = regressor
        self._regressor_names = getattr(regressor, "feature_names_in_", None)

    def transform_one(self, record: Record) -> np.ndarray:
        """The row the regressor sees (what the pipeline's transformer outputs)."""
        row = np.zeros(self._n_outputs, dtype=np.float64)
        for column in self._columns:
            row[column.position] = column.step(record.get(column.name))
        return row

    def transform_many(self, records: Sequence[Record]) -> np.ndarray:
        """`transform_one` of each record, column by column."""
        out = np.zeros((len(records), self._n_outputs), dtype=np.float64)
        for column in self._columns:
            values = [record.get(column.name) for record in records]
            if column.step is _to_float:
                # numpy turns None into NaN itself: no Python call per value.
                out[:, column.position] = np.array(values, dtype=np.float64)
            else:
                out[:, column.position] = [column.step(value) for value in values]
        return out

    def predict_one(self, record: Record) -> float:
        """The prediction for one record keyed by the pipeline's input columns."""
        return self._trees.predict_row(self.transform_one(record))

    def predict_many(self, records: Sequence[Record]) -> np.ndarray:
        """Predictions for many records: sklearn's compiled tree code on the
        compiled transform (faster than a numpy walk once there are many rows)."""
        features = self.transform_many(records)
        if isinstance(self._trees, _Forest):
            return self._trees.predict_rows(features)
        if self._regressor_names is not None:
            features = pd.DataFrame(features, columns=self._regressor_names)
        return np.asarray(self._regressor.predict(features), dtype=np.float64).ravel()


class RoutedPredictor:
    """A compiled `ByRequestShape`: each record to the compiled pipeline its
    request shape is answered by, as the model routes its rows."""

    def __init__(self, titled: CompiledPredictor, untitled: CompiledPredictor) -> None:
        self._titled, self._untitled = titled, untitled

    def _pick(self, record: Record) -> CompiledPredictor:
        return self._untitled if _is_missing(record.get(UNTITLED_WHEN_MISSING)) else self._titled

    def predict_one(self, record: Record) -> float:
        return self._pick(record).predict_one(record)

    def predict_many(self, records: Sequence[Record]) -> np.ndarray:
        out = np.empty(len(records), dtype=np.float64)
        untitled = np.array([self._pick(r) is self._untitled for r in records], dtype=bool)
        for rows, compiled in ((~untitled, self._titled), (untitled, self._untitled)):
            if rows.any():
                out[rows] = compiled.predict_many([records[i] for i in np.flatnonzero(rows)])
        return out


def compile_pipeline(model: object) -> CompiledPredictor | RoutedPredictor:
    """Compile a fitted `Pipeline(transformer, regressor)` (or a
    `ByRequestShape` of two); raise `NotCompilable`."""
    if isinstance(model, ByRequestShape):
        return RoutedPredictor(compile_pipeline(model.titled_), compile_pipeline(model.untitled_))
    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        raise NotCompilable(
            f"expected Pipeline(ColumnTransformer, regressor), got {type(model).__name__}"
        )
    transformer, regressor = (step for _, step in model.steps)
    if not isinstance(transformer, ColumnTransformer):
        raise NotCompilable(
            f"first step is {type(transformer).__name__}, not a ColumnTransformer"
        )
    columns, n_outputs = _compile_column_transformer(transformer)
    if isinstance(regressor, HistGradientBoostingRegressor):
        trees: _Forest | _Boosting = _Boosting.of(regressor)
    elif isinstance(regressor, RandomForestRegressor):
        trees = _Forest.of(regressor)
    else:
        raise NotCompilable(f"regressor {type(regressor).__name__} is not supported")
    return CompiledPredictor(columns, n_outputs, trees, regressor)


def verify(
    compiled: CompiledPredictor, model: object, frame: pd.DataFrame
) -> tuple[bool, str]:
    """Do compiled and pipeline predictions agree exactly on every row of `frame`,
    one by one and as a batch?

    Returns `(ok, detail)`; `detail` names the first disagreeing row.
    """
    expected = np.asarray(model.predict(frame), dtype=np.float64).ravel()
    records = [_nan_to_none(r) for r in frame.to_dict(orient="records")]
    together = compiled.predict_many(records)
    for i, record in enumerate(records):
        for how, got in (("one by one", compiled.predict_one(record)), ("batch", together[i])):
            if not (got == expected[i] or (math.isnan(got) and math.isnan(expected[i]))):
                return False, f"row {i} ({how}): compiled {got!r} != pipeline {expected[i]!r}"
    return True, f"{len(records)} rows identical, one by one and as a batch"


def _nan_to_none(record: dict) -> dict:
    return {
        k: None if isinstance(v, float) and math.isnan(v) else v
        for k, v in record.items()
    }


# -- the transformer -----------------------------------------------------------


def _compile_column_transformer(
    ct: ColumnTransformer,
) -> tuple[list[_Column], int]:
    names = list(getattr(ct, "feature_names_in_", []))
    columns: list[_Column] = []
    n_outputs = 0
    for name, transformer, selection in ct.transformers_:
        where = ct.output_indices_[name]
        n_outputs = max(n_outputs, where.stop)
        if where.stop == where.start:
            continue
        selected = _column_names(selection, names)
        steps = [_column_step(transformer, j) for j in range(len(selected))]
        if len(selected) != where.stop - where.start:
            raise NotCompilable(
                f"transformer {name!r}: {len(selected)} input columns "
                f"but fitted width {where.stop - where.start}"
            )
        columns.extend(
            _Column(column, step, where.start + j)
            for j, (column, step) in enumerate(zip(selected, steps))
        )
    return columns, n_outputs


def _column_names(selection: object, names: list[str]) -> list[str]:
    if isinstance(selection, str):
        return [selection]
    items = list(np.atleast_1d(selection))
    if all(isinstance(c, str) for c in items):
        return items
    if names and all(isinstance(c, (int, np.integer)) for c in items):
        return [names[int(c)] for c in items]
    raise NotCompilable(f"cannot resolve column selection {selection!r}")


def _column_step(transformer: object, j: int) -> ColumnStep:
    """How input column `j` of `transformer` becomes its one output value."""
    # Fitted, "passthrough" is an identity FunctionTransformer.
    if transformer == "passthrough" or (
        isinstance(transformer, FunctionTransformer) and transformer.func is None
    ):
        return _to_float
    if isinstance(transformer, OrdinalEncoder):
        return _ordinal_step(transformer, j)
    raise NotCompilable(f"{type(transformer).__name__} is not supported")


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _to_float(value: object) -> float:
    return math.nan if value is None else float(value)


def _ordinal_step(encoder: OrdinalEncoder, j: int) -> ColumnStep:
    if encoder.handle_unknown != "use_encoded_value":
        raise NotCompilable("OrdinalEncoder(handle_unknown='error')")
    categories = encoder.categories_[j]
    if any(_is_missing(c) for c in categories):
        raise NotCompilable("OrdinalEncoder fitted with a missing category")
    codes = range(len(categories))
    if getattr(encoder, "_infrequent_enabled", False):
        # Infrequent categories share the code sklearn gives them (min_frequency).
        mapping = encoder._default_to_infrequent_mappings[j]
        if mapping is not None:
            codes = mapping.tolist()
    index = {c: code for c, code in zip(categories.tolist(), codes)}
    unknown = float(encoder.unknown_value)
    missing = float(encoder.encoded_missing_value)

    def step(value: object) -> float:
        if _is_missing(value):
            return missing
        code = index.get(value)
        return unknown if code is None else float(code)

    return step


# -- trees -------------------------------------------------------------------


@dataclass(frozen=True)
class _Forest:
    """A random forest's nodes in flat arrays, walked in lockstep for one row.

    Leaves point to themselves, so a tree that reached its leaf stays there
    while deeper trees keep walking; `depth` steps reach every leaf.
    """

    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    nan_left: np.ndarray
    value: np.ndarray
    depth: int
    # The fitted trees, for batches.
    trees: list

    @classmethod
    def of(cls, forest: RandomForestRegressor) -> _Forest:
        parts = [estimator.tree_ for estimator in forest.estimators_]
        if any(t.n_outputs != 1 for t in parts):
            raise NotCompilable("multi-output trees")
        offsets = np.cumsum([0] + [t.node_count for t in parts[:-1]])
        return cls(
            roots=np.asarray(offsets, dtype=np.intp),
            feature=np.concatenate([np.maximum(t.feature, 0) for t in parts]).astype(np.intp),
            threshold=np.concatenate([t.threshold for t in parts]),
            left=np.concatenate([_self_at_leaves(t.children_left, o) for t, o in zip(parts, offsets)]),
            right=np.concatenate([_self_at_leaves(t.children_right, o) for t, o in zip(parts, offsets)]),
            nan_left=np.concatenate([t.missing_go_to_left.astype(bool) for t in parts]),
            value=np.concatenate([t.value[:, 0, 0] for t in parts]),
            depth=max(t.max_depth for t in parts),
            trees=parts,
        )

    def predict_rows(self, rows: np.ndarray) -> np.ndarray:
        """The forest's mean over many rows, as `ForestRegressor.predict` sums it
        (tree by tree, in order, then divided) minus its per-tree overhead."""
        features = np.ascontiguousarray(rows, dtype=np.float32)
        total = np.zeros(len(features), dtype=np.float64)
        for tree in self.trees:
            total += tree.predict(features)[:, 0]
        total /= len(self.trees)
        return total

    def predict_row(self, row: np.ndarray) -> float:
        # sklearn casts inputs to float32 before comparing with the thresholds.
        x = row.astype(np.float32).astype(np.float64)
        nodes = self.roots
        if np.isnan(x).any():
            for _ in range(self.depth):
                v = x[self.feature[nodes]]
                go_left = np.where(np.isnan(v), self.nan_left[nodes], v <= self.threshold[nodes])
                nodes = np.where(go_left, self.left[nodes], self.right[nodes])
        else:
            for _ in range(self.depth):
                go_left = x[self.feature[nodes]] <= self.threshold[nodes]
                nodes = np.where(go_left, self.left[nodes], self.right[nodes])
        # Same order of additions as sklearn, so the result is bit-identical.
        return float(np.cumsum(self.value[nodes])[-1]) / len(self.trees)


def _self_at_leaves(children: np.ndarray, offset: int) -> np.ndarray:
    nodes = np.arange(len(children), dtype=np.intp)
    return np.where(children < 0, nodes, children).astype(np.intp) + offset


@dataclass(frozen=True)
class _Boosting:
    """A HistGradientBoostingRegressor's trees in flat arrays, for one row.

    Reproduces sklearn's `_predict_one_from_raw_data`: float64 comparisons,
    NaN and negative categories routed like missing values, categories in
    the split's bitset to the left, other known categories to the right and
    unknown ones like missing values; then baseline + leaves in order.
    """

    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    nan_left: np.ndarray
    bitset_row: np.ndarray
    left_bits: np.ndarray
    known_bits: np.ndarray
    value: np.ndarray
    depth: int
    baseline: float
    # Categorical split nodes, and the known-categories row of their feature.
    cat_nodes: np.ndarray
    cat_known_row: np.ndarray

    @classmethod
    def of(cls, model: HistGradientBoostingRegressor) -> _Boosting:
        from sklearn._loss.link import IdentityLink

        if model.n_trees_per_iteration_ != 1 or not isinstance(model._loss.link, IdentityLink):
            raise NotCompilable("HistGradientBoostingRegressor with a non-identity link")
        trees = [predictors[0] for predictors in model._predictors]
        offsets, bit_offsets, total, total_bits = [], [], 0, 0
        for tree in trees:
            offsets.append(total)
            bit_offsets.append(total_bits)
            total += len(tree.nodes)
            total_bits += len(tree.raw_left_cat_bitsets)
        nodes = [t.nodes for t in trees]
        leaf = np.concatenate([n["is_leaf"].astype(bool) for n in nodes])
        position = np.arange(total, dtype=np.intp)
        shift = np.repeat(np.asarray(offsets, dtype=np.intp), [len(n) for n in nodes])
        known_bits, known_row = model._bin_mapper.make_known_categories_bitsets()
        left_bits = [t.raw_left_cat_bitsets for t in trees if len(t.raw_left_cat_bitsets)]
        feature = np.concatenate([n["feature_idx"] for n in nodes]).astype(np.intp)
        categorical = np.concatenate([n["is_categorical"].astype(bool) for n in nodes]) & ~leaf
        cat_nodes = np.flatnonzero(categorical)
        return cls(
            roots=np.asarray(offsets, dtype=np.intp),
            feature=feature,
            threshold=np.concatenate([n["num_threshold"] for n in nodes]),
            left=np.where(leaf, position, np.concatenate([n["left"] for n in nodes]) + shift),
            right=np.where(leaf, position, np.concatenate([n["right"] for n in nodes]) + shift),
            nan_left=np.concatenate([n["missing_go_to_left"].astype(bool) for n in nodes]),
            bitset_row=np.concatenate([
                n["bitset_idx"].astype(np.intp) + b for n, b in zip(nodes, bit_offsets)
            ]),
            left_bits=np.concatenate(left_bits) if left_bits else np.zeros((1, 8), np.uint32),
            known_bits=known_bits if len(known_bits) else np.zeros((1, 8), np.uint32),
            value=np.concatenate([n["value"] for n in nodes]),
            depth=int(max(n["depth"].max() for n in nodes)),
            baseline=float(np.ravel(model._baseline_prediction)[0]),
            cat_nodes=cat_nodes,
            cat_known_row=np.asarray(known_row, dtype=np.intp)[feature[cat_nodes]],
        )

    def predict_row(self, row: np.ndarray) -> float:
        # Decide every node's direction for this row at once (a few array
        # operations over all nodes), then follow the chosen children: cheaper
        # than lockstep walking when trees are many and shallow.
        value = row[self.feature]
        go_left = value <= self.threshold
        missing = np.isnan(row)
        if missing.any():
            at_missing = missing[self.feature]
            go_left = np.where(at_missing, self.nan_left, go_left)
        if len(self.cat_nodes):
            v = row[self.feature[self.cat_nodes]]
            code = np.clip(np.nan_to_num(v, nan=0.0), 0, 255).astype(np.intp)
            word, bit = code >> 5, code & 31
            in_left = (self.left_bits[self.bitset_row[self.cat_nodes], word] >> bit) & 1
            known = (self.known_bits[self.cat_known_row, word] >> bit) & 1
            like_missing = self.nan_left[self.cat_nodes]
            go_left[self.cat_nodes] = np.where(
                np.isnan(v) | (v < 0), like_missing,
                np.where(in_left == 1, True, np.where(known == 1, False, like_missing)),
            )
        child = np.where(go_left, self.left, self.right)
        nodes = self.roots
        for _ in range(self.depth):
            nodes = child[nodes]
        leaves = self.value[nodes]
        return float(np.cumsum(np.concatenate(([self.baseline], leaves)))[-1])
