"""The original design's prediction service, kept as the benchmark's baseline.

One pandas DataFrame per request into the sklearn pipeline's `predict`, no
validation, `jsonify` for the answer: what the service did before
`serve/`. It loads the same registered model version the service serves, so
the benchmark compares serving paths, not models.
"""

from __future__ import annotations

import mlflow.sklearn
import pandas as pd
from flask import Flask, jsonify, request

from serve.schemas import ORIGINAL_NAMES

FEATURE_NAMES = {alias: name for name, alias in ORIGINAL_NAMES.items()}


def create_app(tracking_uri: str, name: str, version: str) -> Flask:
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    pipeline = mlflow.sklearn.load_model(f"models:/{name}/{version}")
    app = Flask(__name__)

    @app.post("/predict")
    def predict():
        frame = pd.DataFrame([request.get_json()]).rename(columns=FEATURE_NAMES)
        return jsonify({"global_sales": float(pipeline.predict(frame)[0])})

    @app.post("/predict/batch")
    def predict_batch():
        frame = pd.DataFrame(request.get_json()).rename(columns=FEATURE_NAMES)
        return jsonify({"predictions": pipeline.predict(frame).tolist()})

    return app
