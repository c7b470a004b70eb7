"""Pipelines, training, evaluation, the registry and its champion gate."""
