"""The one place that reads configuration.

Values come from `.run/stack.env` (written by `scripts/stack.sh up`) and are
overridden by real environment variables. No other module reads `os.environ`:
everything else receives a `Settings` (or calls `load_settings()`).

`python -m ml.settings --shell` prints the merged values as `export` lines, so
shell recipes (`make`, dbt on the command line) see exactly what Python sees.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote_plus

ROOT = Path(__file__).resolve().parent.parent

# Names exported to child processes (dbt's profiles.yml reads them via env_var()).
EXPORTED = (
    "MARIADB_HOST",
    "MARIADB_PORT",
    "MARIADB_DATABASE",
    "MARIADB_USER",
    "MARIADB_PASSWORD",
    "MARIADB_READER_USER",
    "MARIADB_READER_PASSWORD",
    "REDIS_URL",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_ARTIFACT_ROOT",
    "PREFECT_HOME",
    "PREFECT_SERVER_ANALYTICS_ENABLED",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
    "DBT_PROFILES_DIR",
    "API_PORT",
    "API_ADMIN_TOKEN",
    "VGSALES_CSV",
    "VGSALES_SEEDS_DIR",
    "PREDICTION_LOG_MAX_BYTES",
)


# The warehouse writer's login, which only dbt and the flows need (not the API).
WRITER_CREDENTIALS = ("MARIADB_USER", "MARIADB_PASSWORD")


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a sh-sourceable KEY=value file (values may be single/double quoted)."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, sep, value = line.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"{path}:{lineno}: expected KEY=value, found {raw!r}")
        parts = shlex.split(value) if value else [""]
        values[key] = parts[0] if parts else ""
    return values


@dataclass(frozen=True)
class Settings:
    """Connection settings and paths shared by dbt, flows, training and the API."""

    root: Path = ROOT
    run_dir: Path = ROOT / ".run"
    mariadb_host: str = "127.0.0.1"
    mariadb_port: int = 33306
    mariadb_database: str = "vgsales"
    mariadb_user: str = "vgsales_writer"
    mariadb_password: str = field(default="", repr=False)
    mariadb_reader_user: str = "vgsales_reader"
    mariadb_reader_password: str = field(default="", repr=False)
    redis_url: str = field(default="redis://127.0.0.1:36379/0", repr=False)
    mlflow_tracking_uri: str = f"sqlite:///{ROOT / '.run' / 'mlflow' / 'mlflow.db'}"
    mlflow_artifact_root: str = str(ROOT / ".run" / "mlflow" / "artifacts")
    prefect_home: str = str(ROOT / ".run" / "prefect")
    prefect_server_analytics_enabled: str = "false"
    # Prefect's default (20 s) is close to what a first start (database
    # migrations) takes on a busy 2-core machine.
    prefect_server_ephemeral_startup_timeout_seconds: str = "90"
    dbt_profiles_dir: str = str(ROOT / "dbt_project")
    api_port: int = 8000
    api_admin_token: str = field(default="", repr=False)
    vgsales_csv: str = ""
    vgsales_seeds_dir: str = str(ROOT / "seeds")
    # Payload bytes the prediction stream may hold before the API drops (and
    # counts) new entries; the consumer frees them as it lands them.
    prediction_log_max_bytes: int = 256 * 1024 * 1024

    @property
    def dbt_project_dir(self) -> Path:
        return self.root / "dbt_project"

    @property
    def seeds_dir(self) -> Path:
        """The folder holding the raw `vgsales.csv` (tests point it at a sample).

        A relative value is relative to the dbt project.
        """
        return self.dbt_project_dir / self.vgsales_seeds_dir

    @property
    def raw_database(self) -> str:
        """dbt puts seeds in `<target schema>_raw` (a MariaDB schema is a database)."""
        return f"{self.mariadb_database}_raw"

    def sqlalchemy_url(self, *, reader: bool = False) -> str:
        """SQLAlchemy URL; `reader=True` gives the read-only user (ML layer, API)."""
        user = self.mariadb_reader_user if reader else self.mariadb_user
        password = self.mariadb_reader_password if reader else self.mariadb_password
        return (
            f"mysql+pymysql://{quote_plus(user)}:{quote_plus(password)}"
            f"@{self.mariadb_host}:{self.mariadb_port}/{self.mariadb_database}"
            "?charset=utf8mb4"
        )

    def for_api(self) -> Settings:
        """These settings without the writer's password.

        The API reads the warehouse with the reader user only; dropping the
        password means a compromised API process cannot write with it.
        """
        return dataclasses.replace(self, mariadb_password="")

    def as_env(self) -> dict[str, str]:
        """The exported names with their values, for child processes."""
        values = {k.upper(): str(v) for k, v in asdict(self).items()}
        # dbt never reads this folder: it reads the copy staged under
        # dbt_project/staged_seeds/<VGSALES_SEED_SHA256>/ (ml/warehouse/seed_stage.py).
        values["VGSALES_SEEDS_DIR"] = str(self.seeds_dir.resolve())
        env = {name: values[name] for name in EXPORTED}
        # Derived, never read back: dbt finds the staged copy by it and
        # records it with each load of the seed.
        env["VGSALES_SEED_SHA256"] = self.seed_sha256()
        return env

    def seed_sha256(self) -> str:
        """SHA-256 of `<seeds_dir>/vgsales.csv`, '' when there is no file.

        dbt hashes only the path of seeds over 1 MiB; the seed's
        `meta.file_sha256` (and so `seed_load_audit`) carries this instead.
        """
        path = self.seeds_dir / "vgsales.csv"
        if not path.is_file():
            return ""
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()


def load_settings(
    environ: dict[str, str] | None = None, env_file: Path | None = None
) -> Settings:
    """Merge defaults < `.run/stack.env` < environment into a `Settings`."""
    environ = dict(os.environ if environ is None else environ)
    run_dir = Path(environ.get("VGSALES_RUN_DIR", ROOT / ".run"))
    merged = read_env_file(env_file or run_dir / "stack.env")
    merged.update({k: v for k, v in environ.items() if k in EXPORTED})
    kwargs: dict[str, object] = {"run_dir": run_dir}
    for name in EXPORTED:
        if name in merged:
            key = name.lower()
            numeric = key.endswith(("_port", "_bytes"))
            kwargs[key] = int(merged[name]) if numeric else merged[name]
    return Settings(**kwargs)


def environ_without_writer() -> dict[str, str] | None:
    """This process's environment minus the writer's credentials, or None
    when it holds none.

    Environment variables cannot be taken back from a running process
    (`/proc/<pid>/environ` keeps showing what it was started with, and forked
    children inherit it), so a process that must not hold them re-executes
    itself with this environment (`python -m serve`).
    """
    if not any(name in os.environ for name in WRITER_CREDENTIALS):
        return None
    return {k: v for k, v in os.environ.items() if k not in WRITER_CREDENTIALS}


def export_to_environ(settings: Settings) -> None:
    """Make the settings visible to child processes and in-process dbt/Prefect."""
    os.environ.update(settings.as_env())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shell", action="store_true", help="print export lines")
    args = parser.parse_args()
    settings = load_settings()
    if args.shell:
        for key, value in settings.as_env().items():
            print(f"export {key}={shlex.quote(value)}")
    else:
        print(settings)


if __name__ == "__main__":
    main()
