"""The one place that reads configuration.

Values come from `.run/stack.env` (written by `scripts/stack.sh up`) and are
overridden by real environment variables; pydantic-settings reads both and
checks each value's type. No other module reads `os.environ`: everything else
receives a `Settings` (or calls `load_settings()`).

`python -m ml.settings --shell` prints the merged values as `export` lines, so
shell recipes (`make`, dbt on the command line) see exactly what Python sees.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import re
import shlex
import typing
from collections.abc import Mapping
from dataclasses import asdict, field
from pathlib import Path
from urllib.parse import quote_plus, unquote, urlsplit, urlunsplit

from pydantic import NonNegativeInt, PositiveInt, SecretStr, ValidationError, create_model
from pydantic.dataclasses import dataclass
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


def _port_defaults(ports_script: Path = ROOT / "scripts" / "ports.sh") -> dict[str, int]:
    """The default of every port, read from scripts/ports.sh (their one home,
    which the shell scripts source): its `NAME) echo 1234 ;;` lines."""
    found = re.findall(r"^\s*([A-Z_]+_PORT)\) echo (\d+) ;;$", ports_script.read_text(), re.M)
    return {name: int(port) for name, port in found}


PORT_DEFAULTS = _port_defaults()

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
    "REDIS_API_PASSWORD",
    "REDIS_FLOWS_PASSWORD",
    "REDIS_DRAIN_PASSWORD",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_ARTIFACT_ROOT",
    "PREFECT_HOME",
    "PREFECT_SERVER_ANALYTICS_ENABLED",
    "PREFECT_API_AUTH_STRING",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
    "DBT_PROFILES_DIR",
    "API_PORT",
    "API_INSTANCES",
    "API_INSTANCE_PORT",
    "API_ADMIN_TOKEN",
    "VGSALES_CSV",
    "VGSALES_SEEDS_DIR",
    "PREDICTION_LOG_MAX_BYTES",
    "VGSALES_BOOSTING_ITERATIONS",
)


# The warehouse writer's login, which only dbt and the flows need (not the API).
WRITER_CREDENTIALS = ("MARIADB_USER", "MARIADB_PASSWORD")
# Redis ACL users by role (scripts/stack.sh creates them): what each may do
# is in the ACL; REDIS_URL's own user (the stack's admin, REDIS_PASSWORD in
# stack.env) is for tests and tools. A role without a password (no ACL, e.g.
# older stacks) uses REDIS_URL, except the API, which then logs in as nobody.
# The registry server's database password (MLFLOW_DB_PASSWORD) is only the
# server's: no client, and so no API process, ever needs it.
NOT_FOR_API = (*WRITER_CREDENTIALS, "REDIS_PASSWORD", "REDIS_FLOWS_PASSWORD",
               "REDIS_DRAIN_PASSWORD", "PREFECT_API_AUTH_STRING", "MLFLOW_DB_PASSWORD")
# The values that are secrets (a user name is not).
_SECRETS_NOT_FOR_API = tuple(name for name in NOT_FOR_API if name != "MARIADB_USER")
MIN_SECRET_LENGTH = 8


@dataclass(frozen=True)
class Settings:
    """Connection settings and paths shared by dbt, flows, training and the API.

    A pydantic dataclass, so `dataclasses.replace(settings, ...)` checks types
    too (a port must be an int; a password given as `str` becomes `SecretStr`).
    """

    root: Path = ROOT
    run_dir: Path = ROOT / ".run"
    mariadb_host: str = "127.0.0.1"
    mariadb_port: int = PORT_DEFAULTS["MARIADB_PORT"]
    mariadb_database: str = "vgsales"
    mariadb_user: str = "vgsales_writer"
    mariadb_password: SecretStr = SecretStr("")
    mariadb_reader_user: str = "vgsales_reader"
    mariadb_reader_password: SecretStr = SecretStr("")
    redis_url: str = field(default=f"redis://127.0.0.1:{PORT_DEFAULTS['REDIS_PORT']}/0", repr=False)
    redis_api_password: str = field(default="", repr=False)
    redis_flows_password: str = field(default="", repr=False)
    redis_drain_password: str = field(default="", repr=False)
    # The registry server scripts/stack.sh runs (its default port); a
    # `sqlite:///` URI is a local store instead (each test area has its own).
    mlflow_tracking_uri: str = f"http://127.0.0.1:{PORT_DEFAULTS['MLFLOW_PORT']}"
    # Where a local store's experiments keep artifacts; with a server, the
    # server keeps them (`--serve-artifacts`).
    mlflow_artifact_root: str = str(ROOT / ".run" / "mlflow" / "artifacts")
    prefect_home: str = str(ROOT / ".run" / "prefect")
    prefect_server_analytics_enabled: str = "false"
    # `user:password` for the Prefect server's basic auth (scripts/prefect_server.sh).
    prefect_api_auth_string: str = field(default="", repr=False)
    # Prefect's default (20 s) is close to what a first start (database
    # migrations) takes on a busy 2-core machine.
    prefect_server_ephemeral_startup_timeout_seconds: str = "90"
    dbt_profiles_dir: str = str(ROOT / "dbt_project")
    api_port: int = PORT_DEFAULTS["API_PORT"]
    # nginx listens on api_port in front of this many gunicorn instances, on
    # loopback ports from api_instance_port up (serve/edge/).
    api_instances: PositiveInt = 2
    api_instance_port: int = PORT_DEFAULTS["API_INSTANCE_PORT"]
    api_admin_token: SecretStr = SecretStr("")
    vgsales_csv: str = ""
    vgsales_seeds_dir: str = str(ROOT / "seeds")
    # Payload bytes the prediction stream may hold before the API drops (and
    # counts) new entries; the consumer frees them as it lands them.
    prediction_log_max_bytes: int = 256 * 1024 * 1024
    # Iterations of every HistGradientBoosting fit (the models and the
    # four-field baseline); 0 keeps the tuned number (ml/modeling/pipelines.py
    # BOOSTING). The test suite sets a small one: the same code, cheaper fits.
    vgsales_boosting_iterations: NonNegativeInt = 0

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
        secret = self.mariadb_reader_password if reader else self.mariadb_password
        password = secret.get_secret_value()
        return (
            f"mysql+pymysql://{quote_plus(user)}:{quote_plus(password)}"
            f"@{self.mariadb_host}:{self.mariadb_port}/{self.mariadb_database}"
            "?charset=utf8mb4"
        )

    def redis_url_as(self, role: str) -> str:
        """`redis_url` (same server and db) logged in as the role's ACL user."""
        password = getattr(self, f"redis_{role}_password")
        return redis_url_as(self.redis_url, role, password) if password else self.redis_url

    def for_api(self) -> Settings:
        """These settings without the writer's password, and Redis as the API user.

        The API reads the warehouse with the reader user only, and Redis as a
        user that may only read snapshots and append predictions; dropping the
        other passwords means a compromised API process cannot use them.
        """
        return dataclasses.replace(
            self, mariadb_password="", redis_url=api_redis_url(self.redis_url,
                                                               self.redis_api_password),
            redis_flows_password="", redis_drain_password="", prefect_api_auth_string="",
        )

    def as_env(self) -> dict[str, str]:
        """The exported names with their values, for child processes."""
        values = {
            k.upper(): v.get_secret_value() if isinstance(v, SecretStr) else str(v)
            for k, v in asdict(self).items()
        }
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


class _MappingSource(EnvSettingsSource):
    """Environment variables from a given mapping (`os.environ` unless a test
    passes its own), so a test can load settings without patching the process."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in self._environ.items()}


def _loaded_fields() -> dict[str, tuple[object, None]]:
    """The exported `Settings` fields with their types; no defaults, so that
    only values found in the environment or the file are passed on."""
    hints = typing.get_type_hints(Settings)
    return {
        f.name: (hints[f.name], None)
        for f in dataclasses.fields(Settings)
        if f.name.upper() in EXPORTED
    }


_SOURCE_FIELDS = _loaded_fields()


def _describe(error: ValidationError, environ: Mapping[str, str], env_file: Path) -> str:
    """Each invalid value with its variable and where it came from."""
    lines = []
    for problem in error.errors():
        name = str(problem["loc"][0]).upper()
        origin = "the environment" if name in environ else str(env_file)
        lines.append(f"{name}={problem['input']!r} (from {origin}): {problem['msg']}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = None
) -> Settings:
    """Settings from the environment, then `.run/stack.env`, then the defaults.

    `VGSALES_RUN_DIR` moves the run directory (and so the env file). A value
    of the wrong type raises `ValueError` naming the variable and its source.
    """
    environ = os.environ if environ is None else environ
    run_dir = Path(environ.get("VGSALES_RUN_DIR", ROOT / ".run"))
    env_file = env_file or run_dir / "stack.env"

    # A class per call because pydantic-settings picks its sources in a
    # classmethod, and these read this call's `environ`. Unset fields stay
    # None (not validated) and are left out, so `Settings` gives the defaults.
    class Sources(BaseSettings):
        model_config = SettingsConfigDict(
            extra="ignore", env_file_encoding="utf-8", validate_default=False
        )

        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                       dotenv_settings, file_secret_settings):
            return (_MappingSource(settings_cls, environ), dotenv_settings)

    model = create_model("SettingsSources", __base__=Sources, **_SOURCE_FIELDS)
    try:
        found = model(_env_file=env_file).model_dump(exclude_unset=True)
    except ValidationError as error:
        raise ValueError(_describe(error, environ, env_file)) from None
    return Settings(run_dir=run_dir, **found)


def redis_url_as(url: str, role: str, password: str) -> str:
    """`url` with its user and password replaced by the role's ACL user."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"vgsales_{role}:{quote_plus(password)}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def api_redis_url(url: str, api_password: str) -> str:
    """`url` as the API's Redis user; without its password, as no user at all
    (never the admin's login that REDIS_URL carries)."""
    if api_password:
        return redis_url_as(url, "api", api_password)
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def environ_without_writer() -> dict[str, str] | None:
    """This process's environment without anything the API must not hold,
    or None when there is nothing to take out.

    Out go the writer's credentials, the Redis admin's and other roles'
    passwords, the Prefect server's, and any variable whose value contains
    one of them or REDIS_URL's password; REDIS_URL itself is kept as the API
    user (`api_redis_url`). Environment variables cannot be taken back from
    a running process (`/proc/<pid>/environ` keeps showing what it was
    started with, and forked children inherit it), so a process that must
    not hold them re-executes itself with this environment (`python -m serve`).
    """
    environ = dict(os.environ)
    secrets = {environ.get(name, "") for name in _SECRETS_NOT_FOR_API}
    url = urlsplit(environ.get("REDIS_URL", ""))
    if url.password and url.username != "vgsales_api":
        secrets |= {url.password, unquote(url.password)}
    # A short value would be found inside others by chance.
    secrets = {secret for secret in secrets if len(secret) >= MIN_SECRET_LENGTH}
    scrubbed = {
        name: value for name, value in environ.items()
        if name not in NOT_FOR_API and not any(secret in value for secret in secrets)
    }
    if environ.get("REDIS_URL"):
        scrubbed["REDIS_URL"] = api_redis_url(environ["REDIS_URL"],
                                              environ.get("REDIS_API_PASSWORD", ""))
    return None if scrubbed == environ else scrubbed


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
