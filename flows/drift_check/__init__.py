"""The drift check flow and the prediction-log drain: `python -m flows.drift_check`."""
