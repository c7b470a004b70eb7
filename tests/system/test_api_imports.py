"""An API process loads only what serves: no plotting, training, evaluation or
reporting code, in a fresh process after `create_app` and in real gunicorn
workers, both with the champions loaded and a prediction of each model made.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from ml.settings import ROOT
from serve.edge.limits import workers_per_instance
from tests.api_server import call, start, stop, wait_every_worker_serving
from tests.helpers import free_api_ports

pytestmark = pytest.mark.slow

# Modules an API worker never runs. A name matches itself and its submodules.
# sklearn.model_selection is not here: sklearn.ensemble itself imports it
# (for its stacking estimators), so every process holding a forest does.
FORBIDDEN = (
    "matplotlib",
    "ml.modeling.train",
    "ml.modeling.evaluate",
    "ml.modeling.registry",
    "ml.modeling.plots",
    "ml.reporting",
    "ml.monitoring.drift",
)
PREDICT = {"Platform": "Wii", "Year": 2008, "Genre": "Racing", "NA_Sales": 1.0,
           "EU_Sales": 0.5, "JP_Sales": 0.1, "Other_Sales": 0.1}
FORECAST = {"platform": "Wii", "genre": "Racing", "publisher": "Nintendo", "year": 2008}

# Run in a fresh interpreter: build the app in-process (champions loaded
# before create_app returns), predict with both models, list sys.modules.
IN_PROCESS = f"""
import json, sys
from ml.settings import load_settings
from serve.app import create_app

client = create_app(load_settings()).test_client()
for path, body in (("/predict", {PREDICT!r}), ("/v1/forecast", {FORECAST!r})):
    answer = client.post(path, json=body)
    assert answer.status_code == 200, answer.data
print(json.dumps(sorted(sys.modules)))
"""


def forbidden(modules) -> list[str]:
    return sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))


def test_the_forbidden_list_names_real_modules():
    """Each name is importable, so its absence below means something."""
    code = "import importlib, sys\nfor name in sys.argv[1:]: importlib.import_module(name)"
    done = subprocess.run([sys.executable, "-c", code, *FORBIDDEN], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_create_app_imports_no_training_or_plotting_code(server):
    done = subprocess.run(
        [sys.executable, "-c", IN_PROCESS], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, **server.settings.as_env()}, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert "serve.model.compiled" in modules and "sklearn.ensemble" in modules
    assert forbidden(modules) == []


def test_gunicorn_workers_import_no_training_or_plotting_code(server, tmp_path):
    """Python's import profiler (PYTHONPROFILEIMPORTTIME, inherited by the
    re-executed master and its forked workers) logs every module any of the
    processes imports: their union must hold none of the forbidden ones."""
    settings = free_api_ports(server.settings)
    log = tmp_path / "gunicorn.log"
    process = start(settings, log, env={"PYTHONPROFILEIMPORTTIME": "1"})
    try:
        wait_every_worker_serving(settings, process, log)
        workers = settings.api_instances * workers_per_instance(settings)
        for _ in range(2 * workers):  # new connections: every worker
            assert call(settings.api_port, "POST", "/predict", PREDICT).status == 200
            assert call(settings.api_port, "POST", "/v1/forecast", FORECAST).status == 200
    finally:
        stop(process)
    imported = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", log.read_text(), re.M))
    # The workers loaded the champions (skops, the only loader the API uses).
    assert {"serve.app", "serve.model.compiled", "skops.io"} <= imported
    assert forbidden(imported) == []
