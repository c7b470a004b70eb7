"""A fitted sklearn pipeline turned into plain numpy for one-row predictions.

`Pipeline.predict` on a single row spends ~3 ms in pandas and sklearn's input
checks before it reaches the trees, while the trees themselves take ~0.1 ms.
`compile_pipeline` reads the fitted steps once (encoder categories, imputer
statistics, every tree's node arrays) and returns a predictor that maps a
record `{feature: value}` to the same float `pipeline.predict` would return,
bit for bit: same float32 cast before each split, same NaN routing, same
summation order. Batches reuse the compiled transform (no pandas) and then
sklearn's own tree code, which beats a numpy walk once rows are many.

Only the building blocks the training code uses are understood: a
`ColumnTransformer` of one-hot/ordinal (infrequent categories grouped or
not)/target encoders, imputers, scalers and passthrough, then a forest,
gradient boosting or histogram gradient boosting (native categorical splits
included), optionally inside a `TransformedTargetRegressor`. Anything else
raises `NotCompilable`, and the caller serves with `pipeline.predict`
instead; `verify` is the caller's proof that a compiled predictor agrees
with the pipeline before it is used.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingRegressor,
    HistGradientBoostingRegressor,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
    TargetEncoder,
)
from sklearn.tree import DecisionTreeRegressor

Record = Mapping[str, object]
# One input column through one fitted step: a scalar in, a scalar out (a
# one-hot encoder, always last, is an `_OneHot` instead).
ColumnStep = Callable[[object], object]


class NotCompilable(Exception):
    """The pipeline holds a step this module does not reproduce."""


@dataclass(frozen=True)
class _OneHot:
    """The last step of a one-hot encoded column: category -> hot position."""

    index: dict[object, int]


@dataclass(frozen=True)
class _Column:
    """One input column's way into the transformed row."""

    name: str
    steps: list[ColumnStep]
    start: int
    one_hot: dict[object, int] | None


class CompiledPredictor:
    """`predict_one(record)` equal to `pipeline.predict(frame_of([record]))[0]`,
    and `predict_many(records)` equal to `pipeline.predict(frame_of(records))`."""

    def __init__(
        self,
        columns: list[_Column],
        n_outputs: int,
        forest: _Forest | _Boosting,
        inverse: Callable[[np.ndarray], np.ndarray] | None,
        final_step: Any,
    ) -> None:
        self._columns = columns
        self._n_outputs = n_outputs
        self._forest = forest
        self._inverse = inverse
        self._final_step = final_step
        self._final_names = getattr(final_step, "feature_names_in_", None)

    def transform_one(self, record: Record) -> np.ndarray:
        """The row the regressor sees (what the pipeline's transformers output)."""
        row = np.zeros(self._n_outputs, dtype=np.float64)
        for column in self._columns:
            value = record.get(column.name)
            for step in column.steps:
                value = step(value)
            if column.one_hot is None:
                row[column.start] = value
            else:
                hot = column.one_hot.get(value)
                if hot is not None:
                    row[column.start + hot] = 1.0
        return row

    def transform_many(self, records: Sequence[Record]) -> np.ndarray:
        """`transform_one` of each record, column by column."""
        out = np.zeros((len(records), self._n_outputs), dtype=np.float64)
        for column in self._columns:
            values = [record.get(column.name) for record in records]
            if column.one_hot is None and all(hasattr(s, "many") for s in column.steps):
                numbers = np.array(values, dtype=np.float64)
                for step in column.steps:
                    numbers = step.many(numbers)
                out[:, column.start] = numbers
                continue
            for step in column.steps:
                values = [step(value) for value in values]
            if column.one_hot is None:
                out[:, column.start] = np.array(values, dtype=np.float64)
            else:
                hot = np.array([column.one_hot.get(v, -1) for v in values], dtype=np.intp)
                rows = np.flatnonzero(hot >= 0)
                out[rows, column.start + hot[rows]] = 1.0
        return out

    def predict_one(self, record: Record) -> float:
        """The prediction for one record keyed by the pipeline's input columns."""
        raw = self._forest.predict_row(self.transform_one(record))
        if self._inverse is None:
            return raw
        return float(np.asarray(self._inverse(np.array([[raw]]))).ravel()[0])

    def predict_many(self, records: Sequence[Record]) -> np.ndarray:
        """Predictions for many records: sklearn's compiled tree code on the
        compiled transform (faster than a numpy walk once there are many rows)."""
        features = self.transform_many(records)
        if getattr(self._forest, "trees", None) is not None:
            raw = self._forest.predict_rows(features)
            if self._inverse is None:
                return raw
            return np.asarray(self._inverse(raw.reshape(-1, 1)), dtype=np.float64).ravel()
        if self._final_names is not None:
            features = pd.DataFrame(features, columns=self._final_names)
        return np.asarray(self._final_step.predict(features), dtype=np.float64).ravel()


def compile_pipeline(model: object) -> CompiledPredictor:
    """Compile a fitted `Pipeline(transformer, regressor)`; raise `NotCompilable`."""
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
    final_step, inverse = regressor, None
    if isinstance(regressor, TransformedTargetRegressor):
        if regressor.transformer is not None or regressor.inverse_func is None:
            raise NotCompilable("TransformedTargetRegressor needs func/inverse_func")
        inverse = regressor.inverse_func
        regressor = regressor.regressor_
    walker = _Boosting.of(regressor) if isinstance(regressor, HistGradientBoostingRegressor) \
        else _Forest.of(regressor)
    return CompiledPredictor(columns, n_outputs, walker, inverse, final_step)


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


def known_categories(model: object) -> dict[str, frozenset[str]]:
    """Per input column, the categories the pipeline's encoders were fitted on.

    Works on any pipeline whose first step is a `ColumnTransformer`, compiled
    or not: it is how the API flags categories unseen in training.
    """
    steps = getattr(model, "steps", None)
    transformer = steps[0][1] if steps else None
    if not isinstance(transformer, ColumnTransformer):
        return {}
    names = list(getattr(transformer, "feature_names_in_", []))
    known: dict[str, frozenset[str]] = {}
    for _, fitted, selection in transformer.transformers_:
        encoder = _encoder_in(fitted)
        if encoder is None:
            continue
        for column, categories in zip(_column_names(selection, names), encoder.categories_):
            known[column] = frozenset(c for c in categories.tolist() if isinstance(c, str))
    return known


def _encoder_in(transformer: object) -> object | None:
    if isinstance(transformer, Pipeline):
        transformer = transformer.steps[-1][1]
    return transformer if hasattr(transformer, "categories_") else None


def _nan_to_none(record: dict) -> dict:
    return {
        k: None if isinstance(v, float) and math.isnan(v) else v
        for k, v in record.items()
    }


# -- transformers ------------------------------------------------------------


def _compile_column_transformer(
    ct: ColumnTransformer,
) -> tuple[list[_Column], int]:
    names = list(getattr(ct, "feature_names_in_", []))
    columns: list[_Column] = []
    n_outputs = 0
    for name, transformer, selection in ct.transformers_:
        where = ct.output_indices_[name]
        n_outputs = max(n_outputs, where.stop)
        if transformer == "drop" or where.stop == where.start:
            continue
        selected = _column_names(selection, names)
        position = where.start
        for j, column in enumerate(selected):
            steps, width = _column_steps(transformer, j)
            if width:
                one_hot = steps.pop().index if steps and isinstance(steps[-1], _OneHot) else None
                columns.append(_Column(column, steps, position, one_hot))
            position += width
        if position != where.stop:
            raise NotCompilable(
                f"transformer {name!r}: compiled width {position - where.start} "
                f"!= fitted width {where.stop - where.start}"
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


def _column_steps(transformer: object, j: int) -> tuple[list[ColumnStep], int]:
    """The steps for input column `j` of `transformer` and its output width."""
    if isinstance(transformer, str) and transformer == "passthrough":
        return [_to_float], 1
    if isinstance(transformer, Pipeline):
        steps: list[ColumnStep] = []
        width = 1
        for _, step in transformer.steps:
            if width == 0:
                return [], 0
            if width != 1:
                raise NotCompilable("only the last step of a nested pipeline may widen")
            more, width = _column_steps(step, j)
            steps.extend(more)
            # A step that drops columns shifts the later steps' column numbers.
            j -= int(np.count_nonzero(_dropped(step)[:j]))
        return steps, width
    if isinstance(transformer, FunctionTransformer) and transformer.func is None:
        return [], 1
    if isinstance(transformer, SimpleImputer):
        if _dropped(transformer)[j]:
            return [], 0
        return [_imputer_step(transformer, j)], 1
    if isinstance(transformer, StandardScaler):
        return [_scaler_step(transformer, j)], 1
    if isinstance(transformer, OneHotEncoder):
        return _one_hot_steps(transformer, j)
    if isinstance(transformer, OrdinalEncoder):
        return [_ordinal_step(transformer, j)], 1
    if isinstance(transformer, TargetEncoder):
        return [_target_step(transformer, j)], 1
    raise NotCompilable(f"{type(transformer).__name__} is not supported")


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _to_float(value: object) -> float:
    return math.nan if value is None else float(value)


# Numeric steps also carry `many`, the same arithmetic on a float64 array
# (None already NaN), so batches skip a Python call per value.
_to_float.many = lambda x: x



def _dropped(step: object) -> np.ndarray:
    """Which input columns `step` leaves out of its output: the all-missing
    ones, for an imputer without `keep_empty_features`."""
    if isinstance(step, SimpleImputer) and not step.keep_empty_features:
        return np.array([_is_missing(v) for v in np.asarray(step.statistics_).tolist()])
    return np.zeros(getattr(step, "n_features_in_", 0), dtype=bool)


def _imputer_step(imputer: SimpleImputer, j: int) -> ColumnStep:
    if imputer.add_indicator or not _is_missing(imputer.missing_values):
        raise NotCompilable("SimpleImputer with indicator or custom missing marker")
    fill = imputer.statistics_[j]

    def step(value: object) -> object:
        return fill if _is_missing(value) else value

    if isinstance(fill, (float, np.floating)) and not math.isnan(fill):
        step.many = lambda x: np.where(np.isnan(x), fill, x)
    return step


def _scaler_step(scaler: StandardScaler, j: int) -> ColumnStep:
    mean = scaler.mean_[j] if scaler.with_mean else 0.0
    scale = scaler.scale_[j] if scaler.with_std else 1.0

    def step(value: object) -> float:
        # sklearn subtracts then divides in float64; so do we.
        return (np.float64(_to_float(value)) - mean) / scale

    step.many = lambda x: (x - mean) / scale
    return step


def _category_index(encoder: object, j: int, grouped: bool = False) -> dict[object, int]:
    """Category -> code. With `grouped`, infrequent categories share the code
    sklearn gives them (an ordinal encoder's `min_frequency`)."""
    categories = encoder.categories_[j]
    if any(_is_missing(c) for c in categories):
        raise NotCompilable(f"{type(encoder).__name__} fitted with a missing category")
    codes = range(len(categories))
    if getattr(encoder, "_infrequent_enabled", False):
        if not grouped:
            raise NotCompilable(f"{type(encoder).__name__} with infrequent categories")
        mapping = encoder._default_to_infrequent_mappings[j]
        if mapping is not None:
            codes = mapping.tolist()
    return {c: code for c, code in zip(categories.tolist(), codes)}


def _one_hot_steps(encoder: OneHotEncoder, j: int) -> tuple[list[ColumnStep], int]:
    if encoder.drop_idx_ is not None:
        raise NotCompilable("OneHotEncoder(drop=...)")
    if encoder.handle_unknown not in ("ignore", "infrequent_if_exist"):
        raise NotCompilable("OneHotEncoder(handle_unknown='error')")
    index = _category_index(encoder, j)
    # An unseen category (or None) sets no position: an all-zero block.
    return [_OneHot(index)], len(index)


def _ordinal_step(encoder: OrdinalEncoder, j: int) -> ColumnStep:
    if encoder.handle_unknown != "use_encoded_value":
        raise NotCompilable("OrdinalEncoder(handle_unknown='error')")
    index = _category_index(encoder, j, grouped=True)
    unknown = float(encoder.unknown_value)
    missing = float(encoder.encoded_missing_value)

    def step(value: object) -> float:
        if _is_missing(value):
            return missing
        code = index.get(value)
        return unknown if code is None else float(code)

    return step


def _target_step(encoder: TargetEncoder, j: int) -> ColumnStep:
    if encoder.target_type_ != "continuous":
        raise NotCompilable("TargetEncoder for a non-continuous target")
    index = _category_index(encoder, j)
    encodings = encoder.encodings_[j]
    mean = float(encoder.target_mean_)

    def step(value: object) -> float:
        code = None if _is_missing(value) else index.get(value)
        return mean if code is None else float(encodings[code])

    return step


# -- trees -------------------------------------------------------------------


@dataclass(frozen=True)
class _Forest:
    """All trees' nodes in flat arrays, walked in lockstep for one row.

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
    # Mean of the trees (forests) or init + learning_rate * sum (boosting).
    scale: float
    init: float | None
    divide_by: int | None
    # The fitted trees of a forest, for batches (None for boosting).
    trees: list | None = None

    @classmethod
    def of(cls, regressor: object) -> _Forest:
        if isinstance(regressor, (RandomForestRegressor, ExtraTreesRegressor)):
            trees = list(regressor.estimators_)
            forest = cls._build(trees, scale=1.0, init=None, divide_by=len(trees))
            return dataclasses.replace(forest, trees=[t.tree_ for t in trees])
        if isinstance(regressor, DecisionTreeRegressor):
            return cls._build([regressor], scale=1.0, init=None, divide_by=None)
        if isinstance(regressor, GradientBoostingRegressor):
            if regressor.init_ == "zero":
                init = 0.0
            elif isinstance(regressor.init_, DummyRegressor):
                init = float(np.ravel(regressor.init_.constant_)[0])
            else:
                raise NotCompilable("GradientBoostingRegressor with a custom init")
            return cls._build(
                list(regressor.estimators_[:, 0]),
                scale=float(regressor.learning_rate),
                init=init,
                divide_by=None,
            )
        raise NotCompilable(f"regressor {type(regressor).__name__} is not supported")

    @classmethod
    def _build(
        cls, trees: Sequence[DecisionTreeRegressor], scale: float, init, divide_by
    ) -> _Forest:
        if any(t.tree_.n_outputs != 1 for t in trees):
            raise NotCompilable("multi-output trees")
        offsets, parts, total = [], [], 0
        for tree in trees:
            offsets.append(total)
            parts.append(tree.tree_)
            total += tree.tree_.node_count
        left = np.concatenate([_self_at_leaves(t.children_left, o) for t, o in zip(parts, offsets)])
        right = np.concatenate([_self_at_leaves(t.children_right, o) for t, o in zip(parts, offsets)])
        return cls(
            roots=np.asarray(offsets, dtype=np.intp),
            feature=np.concatenate([np.maximum(t.feature, 0) for t in parts]).astype(np.intp),
            threshold=np.concatenate([t.threshold for t in parts]),
            left=left,
            right=right,
            nan_left=np.concatenate([t.missing_go_to_left.astype(bool) for t in parts]),
            value=np.concatenate([t.value[:, 0, 0] for t in parts]),
            depth=max(t.max_depth for t in parts),
            scale=scale,
            init=init,
            divide_by=divide_by,
        )

    def predict_rows(self, rows: np.ndarray) -> np.ndarray:
        """A forest's mean over many rows, as `ForestRegressor.predict` sums it
        (tree by tree, in order, then divided) minus its per-tree overhead."""
        features = np.ascontiguousarray(rows, dtype=np.float32)
        total = np.zeros(len(features), dtype=np.float64)
        for tree in self.trees:
            total += tree.predict(features)[:, 0]
        total /= self.divide_by
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
        leaves = self.value[nodes]
        # Same order of additions as sklearn, so the result is bit-identical.
        if self.init is not None:
            return float(np.cumsum(np.concatenate(([self.init], self.scale * leaves)))[-1])
        total = float(np.cumsum(leaves)[-1])
        return total / self.divide_by if self.divide_by else total


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
