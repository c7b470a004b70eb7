"""Served models: loading champions, per-worker state, compiled predictors."""
