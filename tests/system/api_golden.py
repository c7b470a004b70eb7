"""A fixed set of API requests and their recorded answers (golden files).

`tests/system/test_api_golden.py` sends these requests to the API of this
checkout and compares status, content type and body byte for byte (but see
`comparable` for /openapi.json) with the
files in `tests/system/golden/`: `api.json` (everything but the forecast)
and `forecast.json` (`/v1/forecast*`, kept apart because forecast answers
are meant to change). Every request carries a fixed `X-Request-ID`, so
nothing in a body varies between runs.

The files were generated from the code before the layout's restructure
(commit ec0ceb7), with champions trained by this checkout's code on the mart
dbt builds from the real vgsales.csv. Regenerate (both files, or one with
`--only forecast`) from any checkout, e.g. after a deliberate change to the
forecast answers:

    git worktree add --detach /tmp/vgsales-golden <commit>
    scripts/with-env python -m tests.system.api_golden --source /tmp/vgsales-golden --only forecast
    git worktree remove /tmp/vgsales-golden

`--source` defaults to this checkout. Training (test-sized, as the suite
trains: tests/helpers.py `use_test_training`) and the mart build always use
this checkout's code; only the served API comes from `--source`, which must
serve it behind nginx (serve/edge/): the readiness check asks each instance.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.api_server import call, register_champions, start, stop, wait_every_worker_serving

GOLDEN = Path(__file__).parent / "golden"
FILES = ("api", "forecast")
REQUEST_ID = "golden-request"

PREDICT = {"Platform": "Wii", "Year": 2008, "Genre": "Racing", "NA_Sales": 1.0,
           "EU_Sales": 0.5, "JP_Sales": 0.1, "Other_Sales": 0.1}
PREDICT_ROWS = [
    PREDICT,
    {"Platform": "PS2", "Year": 2004, "Genre": "Action", "NA_Sales": 2.5,
     "EU_Sales": 1.9, "JP_Sales": 0.4, "Other_Sales": 0.7},
    {"Platform": "DS", "Year": 2006, "Genre": "Puzzle", "NA_Sales": 0.0,
     "EU_Sales": 0.02, "JP_Sales": 0.3, "Other_Sales": 0.0},
    {"Platform": "Brand New Console", "Year": 2015, "Genre": "Shooter", "NA_Sales": 0.4,
     "EU_Sales": 0.3, "JP_Sales": 0.0, "Other_Sales": 0.1},
    {"Platform": "X360", "Year": 2011, "Genre": "Made-up Genre", "NA_Sales": 5.0,
     "EU_Sales": 3.0, "JP_Sales": 0.1, "Other_Sales": 1.0},
]
FORECAST = {"platform": "PS3", "genre": "Action", "publisher": "Electronic Arts", "year": 2010}
FORECAST_ROWS = [
    FORECAST,
    {"platform": "Wii", "genre": "Sports", "publisher": "Nintendo", "year": 2008},
    {"platform": "DS", "genre": "Puzzle", "publisher": "Nobody Ever", "year": 2007},
    {"platform": "PS4", "genre": "Made-up Genre", "publisher": "Ubisoft", "year": 2019},
    {"platform": "GBA", "genre": "Racing", "publisher": "THQ", "year": 2003,
     "series_prior_titles": 2, "series_prior_mean_log_sales": 0.3, "title_platform_count": 2},
]


def _json(value) -> bytes:
    return json.dumps(value).encode()


# name -> (method, path, body bytes or None, content type)
REQUESTS: dict[str, dict[str, tuple[str, str, bytes | None, str]]] = {
    "api": {
        "health": ("GET", "/health", None, "application/json"),
        "ready": ("GET", "/ready", None, "application/json"),
        "openapi": ("GET", "/openapi.json", None, "application/json"),
        **{f"predict {i}": ("POST", "/predict", _json(row), "application/json")
           for i, row in enumerate(PREDICT_ROWS)},
        "predict batch": ("POST", "/predict/batch", _json(PREDICT_ROWS), "application/json"),
        "400 malformed json": ("POST", "/predict", b'{"Platform": "Wii",', "application/json"),
        "400 empty body": ("POST", "/predict", b"", "application/json"),
        "404 unknown route": ("GET", "/nope", None, "application/json"),
        "405 wrong method": ("GET", "/predict", None, "application/json"),
        "405 trace forecast": ("TRACE", "/v1/forecast", None, "application/json"),
        "413 body too large": ("POST", "/predict", b"x" * (1024 * 1024 + 1), "application/json"),
        "422 year as text": ("POST", "/predict", _json({**PREDICT, "Year": "2008"}),
                             "application/json"),
        "422 missing field": ("POST", "/predict",
                              _json({k: v for k, v in PREDICT.items() if k != "EU_Sales"}),
                              "application/json"),
        "422 extra field": ("POST", "/predict", _json({**PREDICT, "Publisher": "EA"}),
                            "application/json"),
        "422 negative sales": ("POST", "/predict", _json({**PREDICT, "Other_Sales": -0.01}),
                               "application/json"),
        "422 NaN": ("POST", "/predict", _json(PREDICT).replace(b"1.0", b"NaN"),
                    "application/json"),
        "422 array for one": ("POST", "/predict", _json([PREDICT]), "application/json"),
        "422 empty batch": ("POST", "/predict/batch", b"[]", "application/json"),
        "422 bad batch row": ("POST", "/predict/batch",
                              _json([PREDICT, {**PREDICT, "Year": 3000}]), "application/json"),
        "401 reload without token": ("POST", "/admin/reload", None, "application/json"),
    },
    "forecast": {
        **{f"forecast {i}": ("POST", "/v1/forecast", _json(row), "application/json")
           for i, row in enumerate(FORECAST_ROWS)},
        "forecast batch": ("POST", "/v1/forecast/batch", _json(FORECAST_ROWS),
                           "application/json"),
        "422 forecast missing publisher": (
            "POST", "/v1/forecast", _json({k: v for k, v in FORECAST.items() if k != "publisher"}),
            "application/json"),
        "422 forecast zero platforms": (
            "POST", "/v1/forecast", _json({**FORECAST, "title_platform_count": 0}),
            "application/json"),
        "422 forecast batch not a list": ("POST", "/v1/forecast/batch", _json(FORECAST),
                                          "application/json"),
    },
}


def record(port: int, which: str) -> dict[str, dict[str, object]]:
    """Status, content type and body (as text) of each request of `which`."""
    answers = {}
    for name, (method, path, body, content_type) in REQUESTS[which].items():
        response = call(port, method, path, body,
                        {"Content-Type": content_type, "X-Request-ID": REQUEST_ID})
        answers[name] = {"status": response.status,
                         "content_type": response.headers.get("Content-Type"),
                         "body": response.body.decode()}
    return answers


# /openapi.json takes its descriptions from the views' docstrings: the
# restructure moved the views out of `create_app` (one indent level less) and
# serve/state.py to serve/model/state.py, which one docstring names. Those are
# the only differences `comparable` removes; everything else (order included)
# must be equal.
MOVED = {"serve/state.py": "serve/model/state.py"}


def comparable(name: str, answer: dict[str, object]) -> dict[str, object]:
    """`answer` as compared: byte for byte, except /openapi.json's
    descriptions, whose whitespace is collapsed and moved files renamed."""
    if name != "openapi":
        return answer

    def clean(value):
        if isinstance(value, dict):
            return {k: (_description(v) if k == "description" and isinstance(v, str)
                        else clean(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    body = json.dumps(clean(json.loads(answer["body"])))
    return {**answer, "body": body}


def _description(text: str) -> str:
    text = " ".join(text.split())
    for old, new in MOVED.items():
        text = text.replace(old, new)
    return text


def csv_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(which: str) -> dict:
    return json.loads((GOLDEN / f"{which}.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None,
                        help="checkout whose API is recorded (default: this one)")
    parser.add_argument("--only", choices=FILES, action="append")
    args = parser.parse_args(argv)

    from ml.settings import ROOT, load_settings
    from ml.warehouse.dbt_runner import run_dbt
    from ml.modeling.names import NameReference
    from ml.warehouse.mart import read_ml_mart, read_platforms, read_written_names
    from tests.conftest import REAL_CSV
    from tests.helpers import free_api_ports, isolated_settings, use_test_training

    use_test_training()  # the champions the `server` fixture serves

    with tempfile.TemporaryDirectory(prefix="api-golden-") as folder:
        home = Path(folder)
        (home / "seeds").mkdir()
        shutil.copyfile(REAL_CSV, home / "seeds" / "vgsales.csv")
        settings = dataclasses.replace(
            free_api_ports(isolated_settings(load_settings(), "golden", 7, home)),
            vgsales_seeds_dir=str(home / "seeds"),
        )
        print(f"building the mart of {REAL_CSV} into {settings.mariadb_database}", flush=True)
        built = run_dbt(["build", "--no-use-colors", "--exclude", "resource_type:test"],
                        settings, target_path=home / "dbt_target")
        assert built.ok and built.errored == 0, built.status_counts
        print("training and registering both champions", flush=True)
        register_champions(settings, read_ml_mart(settings), platforms=read_platforms(settings),
                           names=NameReference.from_frame(read_written_names(settings)))
        log = home / "gunicorn.log"
        source = (args.source or ROOT).resolve()
        process = start(settings, log, source)
        try:
            wait_every_worker_serving(settings, process, log)
            for which in args.only or FILES:
                commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"],
                                        capture_output=True, text=True, check=True).stdout.strip()
                golden = {"source_commit": commit, "csv_sha256": csv_digest(REAL_CSV),
                          "responses": record(settings.api_port, which)}
                GOLDEN.mkdir(exist_ok=True)
                path = GOLDEN / f"{which}.json"
                path.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
                print(f"wrote {path}")
        finally:
            stop(process)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
