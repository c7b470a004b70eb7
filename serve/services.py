"""What the views share within one worker: settings, models, metrics, the log."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from ml.settings import Settings
from serve.metrics import Metrics
from serve.model.state import ModelState
from serve.prediction_log import PredictionLog

KEY = "vgsales"


@dataclass(frozen=True)
class Services:
    settings: Settings
    state: ModelState
    metrics: Metrics
    log: PredictionLog


def services() -> Services:
    """The current app's services (set by `serve.app.create_app`)."""
    return current_app.extensions[KEY]
