"""Training and evaluation on a small mart-shaped frame (no database needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from ml import features
from ml.features import MODEL_NAMES
from ml.modeling import evaluate, pipelines, shapes, train
from tests.mart_sample import mart_frame


@pytest.fixture(scope="module")
def mart() -> pd.DataFrame:
    return mart_frame(1500, seed=0)


@pytest.fixture(scope="module")
def fitted(mart) -> dict[str, train.FittedModel]:
    return {name: train.fit(name, mart) for name in MODEL_NAMES}


@pytest.fixture(scope="module")
def evaluations(fitted, mart) -> dict[str, evaluate.Evaluation]:
    return {name: evaluate.evaluate(model, mart) for name, model in fitted.items()}


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_fit_uses_the_rows_the_model_is_served_from(model_name, fitted, mart):
    """`prerelease` is fitted on every labelled year, the other on its train split."""
    model = fitted[model_name]
    spec = features.spec(model_name)
    rows = features.training_rows(model_name, mart)
    expected = len(rows) if spec.fit_on_all else (rows[spec.split] == "train").sum()
    assert model.n_train == expected
    years = rows["year"] if spec.fit_on_all else rows.loc[rows[spec.split] == "train", "year"]
    assert model.version_tags["fitted_years"] == f"{int(years.min())}-{int(years.max())}"
    assert model.version_tags["fitted_rows"] == str(expected)
    whole = pipelines.final_pipeline(model.pipeline)
    assert isinstance(whole, Pipeline)
    assert list(whole.named_steps) == ["encode", "model"]
    assert isinstance(model.pipeline, pipelines.ByRequestShape) == spec.request_shapes
    assert list(model.input_example.columns) == spec.columns
    assert model.params["features"] == ",".join(spec.columns)


def test_a_request_without_a_title_is_answered_by_the_model_fitted_without_one(fitted, mart):
    """Rows without a series count go to the untitled pipeline, which never
    reads the title features; titled rows to the one that reads them all."""
    router = fitted["prerelease"].pipeline
    rows = features.model_input("prerelease", mart.head(50))
    untitled = rows.assign(series_prior_titles=np.nan, series_prior_mean_log_sales=np.nan,
                           title_platform_count=np.nan)
    assert np.array_equal(router.predict(rows), router.titled_.predict(rows))
    assert np.array_equal(router.predict(untitled), router.untitled_.predict(untitled))
    # The untitled answer ignores whatever title features a row carries.
    assert np.array_equal(router.untitled_.predict(untitled), router.untitled_.predict(rows))
    mixed = pd.concat([rows.head(3), untitled.tail(3)], ignore_index=True)
    assert np.array_equal(router.predict(mixed), np.concatenate(
        [router.titled_.predict(rows.head(3)), router.untitled_.predict(untitled.tail(3))]))


def test_prerelease_ignores_regional_sales(fitted, mart):
    """Scrambling what is only known after release changes no forecast."""
    scrambled = mart.assign(
        **{c: mart[c].sample(frac=1, random_state=3).to_numpy() * 50 for c in
           ("na_sales", "eu_sales", "jp_sales", "other_sales", "global_sales")}
    )
    pipeline = fitted["prerelease"].pipeline
    before = pipeline.predict(features.model_input("prerelease", mart))
    after = pipeline.predict(features.model_input("prerelease", scrambled))
    assert np.array_equal(before, after)


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_unseen_and_missing_categories_still_predict(model_name, fitted):
    record = {
        "platform": "Console From 2031", "genre": "Action", "publisher": "Brand New Studio",
        "year": 2031, "na_sales": 1.0, "eu_sales": 0.5, "jp_sales": 0.0, "other_sales": 0.1,
    }
    spec = features.spec(model_name)
    frame = features.model_input(model_name, [{k: record[k] for k in spec.columns if k in record}])
    prediction = fitted[model_name].pipeline.predict(frame)
    assert prediction.shape == (1,) and np.isfinite(prediction).all()


def test_fit_is_deterministic_and_digest_ignores_row_order(fitted, mart):
    again = train.fit("prerelease", mart.sample(frac=1, random_state=5))
    first = fitted["prerelease"]
    assert again.data_digest == first.data_digest
    assert again.fingerprint == first.fingerprint
    inputs = features.model_input("prerelease", mart)
    assert np.allclose(again.pipeline.predict(inputs), first.pipeline.predict(inputs))


def test_digest_changes_with_the_data_a_model_reads(fitted, mart):
    changed = mart.copy()
    changed.loc[0, "log_global_sales"] += 1.0
    spec, digest = features.spec("prerelease"), fitted["prerelease"].data_digest
    assert train.data_digest(spec, changed) != digest
    # A column the model does not read is not "new data" for it.
    assert train.data_digest(spec, mart.assign(name="Other title")) == digest


def test_fit_without_train_rows_says_why(mart):
    no_train = mart.assign(split_random="test")
    with pytest.raises(ValueError, match="no training rows.*split_random = train"):
        train.fit("global_from_regional", no_train)
    with pytest.raises(ValueError, match="no training rows.*label and year known"):
        train.fit("prerelease", mart.assign(year=np.nan))


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_evaluation_reports_five_metrics_cv_and_baselines(model_name, evaluations):
    metrics = evaluations[model_name].metrics
    spec = features.spec(model_name)
    for split in spec.splits:
        short = split.removeprefix("split_")
        for metric in evaluate.METRICS:
            assert np.isfinite(metrics[f"{short}_test_{metric}"])
            for baseline in evaluate.BASELINES[model_name]:
                assert f"baseline_{baseline}_{short}_test_{metric}" in metrics
        assert metrics[f"{short}_test_rmse"] == pytest.approx(np.sqrt(metrics[f"{short}_test_mse"]))
    assert {"cv_r2_mean", "cv_r2_std", "cv_rmse_mean", "cv_rmse_std"} <= set(metrics)
    assert 0 <= metrics["cv_r2_std"] < 1
    assert evaluations[model_name].held_out_value == metrics[spec.held_out_metric]


def test_sum_baseline_is_exact_for_global_from_regional(evaluations):
    metrics = evaluations["global_from_regional"].metrics
    assert metrics["baseline_sum_random_test_r2"] > 0.999
    assert metrics["baseline_sum_random_test_r2"] >= metrics["random_test_r2"]


def test_prerelease_beats_the_median_on_both_splits(evaluations):
    metrics = evaluations["prerelease"].metrics
    for split in ("time", "random"):
        assert metrics[f"{split}_test_r2"] > metrics[f"baseline_median_{split}_test_r2"] + 0.3
    assert metrics["time_test_mae_millions"] > 0


def test_prerelease_is_judged_on_the_backtest_with_interval_coverage(evaluations):
    """Fitted on every row, the model is gated on its backtest, not a split."""
    evaluation = evaluations["prerelease"]
    metrics = evaluation.metrics
    assert evaluation.held_out_metric == "backtest_r2_shapes_mean"
    assert metrics["backtest_r2_mean"] > metrics["baseline_median_backtest_r2_mean"]
    assert 0.7 <= metrics["interval_coverage"] <= 0.9
    for shape in shapes.SHAPES:
        assert 0.7 <= metrics[f"interval_coverage_shape_{shape}"] <= 0.9, shape
    assert metrics["interval_width_median"] > 0
    assert evaluation.calibration is not None
    assert "Rolling-origin backtest" in evaluation.to_markdown()
    assert "by request shape" in evaluation.to_markdown()


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_segments_cover_every_held_out_row(model_name, evaluations, mart):
    evaluation = evaluations[model_name]
    spec = features.spec(model_name)
    rows = features.training_rows(model_name, mart)
    held_out = (rows[spec.split] == "test").sum()
    segments = evaluation.segments
    assert set(segments.dimension) == set(evaluate.SEGMENT_DIMENSIONS)
    for dimension, group in segments.groupby("dimension"):
        assert group["rows"].sum() == held_out, dimension
    assert (segments.small == (segments["rows"] < evaluate.SMALL_SEGMENT)).all()


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_importance_and_report(model_name, evaluations):
    evaluation = evaluations[model_name]
    assert sorted(evaluation.importance.feature) == sorted(features.spec(model_name).columns)
    report = evaluation.to_markdown()
    assert report.startswith(f"# {model_name}")
    for heading in ("Test scores next to baselines", "Cross-validation", "by segment"):
        assert heading in report


def test_regional_sales_dominate_global_from_regional(evaluations):
    importance = evaluations["global_from_regional"].importance.set_index("feature")
    drop = importance["permutation_r2_drop"]
    assert drop["na_sales"] > drop["genre"]
    assert "impurity" in importance.columns


def test_a_changed_name_reference_is_a_new_fingerprint(fitted, mart):
    from ml.modeling.names import NameReference

    plain = fitted["prerelease"]
    one = train.fit("prerelease", mart, names=NameReference([("genre", "Party", "Misc", "taxonomy")]))
    other = train.fit("prerelease", mart, names=NameReference([("genre", "Party", "Action", "taxonomy")]))
    assert len({plain.fingerprint, one.fingerprint, other.fingerprint}) == 3
    assert one.data_digest == other.data_digest == plain.data_digest
