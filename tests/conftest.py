"""Shared fixtures: the real local stack, and settings isolated per test area.

Tests are grouped by what they need: `unit/` nothing running (`make test-fast`),
`integration/` one or two real services, `system/` the whole stack (gunicorn,
flows, Prefect).

Tests never touch the user's `vgsales` database, Redis dbs 0-15 or MLflow
store, nor another test run's: each area gets its own
`vgsales_test_<run id>_<area>` database (covered by the writer's `vgsales%`
grant), a Redis db in its run's block and a temporary MLflow/Prefect home
(tests/helpers.py `TestRun`). The run's databases are dropped at the end.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ml.data.fetch import SHARED_COPY as REAL_CSV
from ml.settings import ROOT, Settings, load_settings
from tests import helpers
from tests.helpers import free_port, isolated_settings

STACK = ROOT / "scripts" / "stack.sh"
SAMPLE_ROWS = 3000


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config) -> None:
    """This run's own base temp folder (tests/helpers.py `private_basetemp`
    says why), unless --basetemp names one; test-sized training
    (`helpers.use_test_training`)."""
    if config.option.basetemp is None:
        config.option.basetemp = helpers.private_basetemp()
    helpers.use_test_training()


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    """Start (or reuse) the local MariaDB + Redis stack and return its settings."""
    subprocess.run([str(STACK), "up"], check=True)
    return load_settings()


# What mlflow.set_tracking_uri and set_registry_uri also write into os.environ.
MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
_MLFLOW_URIS_AT_START = {name: os.environ.get(name) for name in MLFLOW_URI_VARIABLES}


@pytest.fixture(autouse=True)
def mlflow_uris_stay_in_their_test():
    """After each test, the MLflow URIs of the environment are the session's again.

    MLflow exports the URI a process points its fluent API at
    (`ml.modeling.champions.client`), so every process a later test starts
    inherited the last registry this one used: an API started through
    `scripts/with-env` (the environment beats .run/stack.env) asked a
    registry server stopped minutes before, and MLflow retried for two
    minutes before its workers could answer.
    """
    yield
    for name, value in _MLFLOW_URIS_AT_START.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session", autouse=True)
def release_test_run():
    """At the end of the session, drop what this run made (if it used the stack)."""
    yield
    if helpers._current is not None:
        helpers._current.release(load_settings())


@pytest.fixture(scope="session")
def raw_csv(tmp_path_factory) -> Path:
    """The real vgsales.csv when present, otherwise a generated sample."""
    if REAL_CSV.exists():
        return REAL_CSV
    from ml.data.synthetic import write_csv  # generated, deterministic sample

    path = tmp_path_factory.mktemp("sample") / "vgsales.csv"
    write_csv(path, n_rows=SAMPLE_ROWS, seed=7)
    return path


@pytest.fixture(scope="session")
def real_csv() -> Path:
    """The real vgsales.csv, for tests that check its known problems.

    CI always has it; a checkout without it fails here, saying where it goes,
    rather than passing on a check that never ran.
    """
    if not REAL_CSV.is_file():
        pytest.fail(
            f"{REAL_CSV} is missing: this test checks the real file's known rows. "
            "Put the canonical vgsales.csv there (seeds/README.md says where to get it)."
        )
    return REAL_CSV


@pytest.fixture(scope="session")
def seeds_dir(raw_csv, tmp_path_factory) -> Path:
    """A seeds folder holding only `vgsales.csv`, for VGSALES_SEEDS_DIR."""
    folder = tmp_path_factory.mktemp("seeds")
    shutil.copyfile(raw_csv, folder / "vgsales.csv")
    return folder


@dataclasses.dataclass
class WarehouseBuild:
    """A finished `dbt build`: its settings, dbt's result and its streamed output."""

    settings: Settings
    result: object  # ml.warehouse.dbt_runner.DbtResult
    lines: list[str]


@pytest.fixture(scope="session")
def warehouse_build(stack_settings, seeds_dir, tmp_path_factory) -> WarehouseBuild:
    """The session's one full `dbt build` (seeds, models, every data test) of
    `seeds_dir`, from empty databases.

    Shared because a build of the real file is the suite's most expensive
    step and its readers need the same thing: the warehouse tests, the
    digest comparison and every test that reads the marts
    (`marts_settings`). Readers must leave it as they found it (a test that
    changes a row puts it back).
    """
    from tests.warehouse_digest import build

    home = tmp_path_factory.mktemp("marts")
    settings = dataclasses.replace(
        isolated_settings(stack_settings, "marts", 0, home), vgsales_seeds_dir=str(seeds_dir)
    )
    lines: list[str] = []
    result = build(settings, home / "dbt_target", log=lines.append)
    return WarehouseBuild(settings, result, lines)


@pytest.fixture(scope="session")
def build_digest(warehouse_build) -> dict:
    """`tests.warehouse_digest.digest` of `warehouse_build`, taken before any
    test touches it (a test that changes the build asks for this first)."""
    from tests.warehouse_digest import digest

    return digest(warehouse_build.settings, warehouse_build.result)


@pytest.fixture(scope="session")
def marts_settings(warehouse_build, build_digest) -> Settings:
    """Settings of the database `warehouse_build` built, for tests that read
    the marts. Its digest is taken first, before any reader is let in."""
    result = warehouse_build.result
    assert result.ok and result.errored == 0, (
        f"dbt build failed: {result.status_counts}\n" + "\n".join(warehouse_build.lines[-40:]))
    return warehouse_build.settings


@pytest.fixture(scope="session")
def built_mart(marts_settings):
    """`ml_release_features` as the session's build holds it (read once; the
    tests that share it only read it)."""
    from ml.warehouse.mart import read_ml_mart

    return read_ml_mart(marts_settings)


@pytest.fixture(scope="session")
def built_platforms(marts_settings):
    """The platform reference (`dim_platform`) of the same build."""
    from ml.warehouse.mart import read_platforms

    return read_platforms(marts_settings)


@pytest.fixture(scope="session")
def built_names(marts_settings):
    """The name reference (`ml_written_names`) of the same build."""
    from ml.modeling.names import NameReference
    from ml.warehouse.mart import read_written_names

    return NameReference.from_frame(read_written_names(marts_settings))


@pytest.fixture(scope="session")
def warehouse_docs(marts_settings, tmp_path_factory) -> Path:
    """The target folder of one `dbt docs generate` over the session's build
    (manifest, catalog, index.html), for the tests that read or serve it."""
    from ml.warehouse.dbt_runner import run_dbt

    target = tmp_path_factory.mktemp("dbt-docs")
    result = run_dbt(["docs", "generate", "--no-use-colors"], marts_settings,
                     target_path=target, log=lambda line: None)
    assert result.ok, result.status_counts
    return target


@pytest.fixture(scope="module")
def private_stack(tmp_path_factory):
    """A second stack of its own (run dir, ports): `(stack(*args), settings, run_dir)`."""
    run_dir = tmp_path_factory.mktemp("stack") / ".run"
    env = {
        **os.environ,
        "VGSALES_RUN_DIR": str(run_dir),
        "MARIADB_PORT": str(free_port()),
        "REDIS_PORT": str(free_port()),
        "MLFLOW_PORT": str(free_port()),
    }

    def stack(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(STACK), *args], env=env, capture_output=True, text=True, timeout=180
        )

    first = stack("up")
    assert first.returncode == 0, first.stderr
    settings = load_settings(environ={
        "VGSALES_RUN_DIR": str(run_dir),
        # The flows it runs fit test-sized models too (as_env exports it).
        "VGSALES_BOOSTING_ITERATIONS": os.environ["VGSALES_BOOSTING_ITERATIONS"],
    })
    yield stack, settings, run_dir
    stack("down")
