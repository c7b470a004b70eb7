"""The prediction API: `python -m serve` runs it, nginx in front of gunicorn instances.

- `app`: the Flask application factory; `routes/`: the blueprints.
- `services`, `request_checks`, `errors`: what views share, what a request must be,
  the one error shape.
- `schemas`: request/response bodies, derived from `ml.features`.
- `model/loaded`: a registered model version loaded and ready to predict.
- `model/compiled`: fitted pipelines as plain numpy for fast single predictions.
- `model/state`: which versions a worker serves; how a reload reaches every worker.
- `prediction_log`: every prediction to the Redis stream, in the background;
  `prediction_counts`: what a killed worker held, counted by another.
- `metrics`: Prometheus metrics summed across workers.
- `openapi`: `/openapi.json` and `/docs`, generated from the routes.
- `instance`, `gunicorn_conf`: one gunicorn instance (stock gthread) and its
  settings; `edge/`: nginx in front of the instances, its limits, and the
  launcher `__main__` runs.
"""
