"""docker-compose.yml cannot run here (no Docker engine): check it statically
against the local stack — services, build paths, variable names and ports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ml.monitoring.stream import LIBRARY
from ml.settings import EXPORTED, PORT_DEFAULTS, ROOT, Settings
from serve.edge.nginx import render

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
STACK_SH = (ROOT / "scripts" / "stack.sh").read_text()
# Names written to .run/stack.env by scripts/stack.sh.
STACK_ENV_NAMES = set(re.findall(r"^([A-Z_]+)='", STACK_SH, flags=re.M))
INTERPOLATION = re.compile(r"\$\{([A-Z_]+)(?::?[-?][^}]*)?\}")


def stack_default(name: str) -> str:
    """The local stack's default port (scripts/ports.sh, their one home)."""
    return str(PORT_DEFAULTS[name])


# The API replicas: one gunicorn instance each, behind the `nginx` service.
REPLICAS = sorted(name for name in SERVICES if name.startswith("api-"))
APPS = ["worker", "consumer", *REPLICAS]


def test_services_present():
    assert set(SERVICES) == {
        "mariadb", "redis", "mlflow", "prefect", "worker", "consumer", "nginx", *REPLICAS}
    assert REPLICAS == ["api-1", "api-2"]
    assert SERVICES["mariadb"]["image"].startswith("mariadb:10.11")
    assert SERVICES["redis"]["image"].startswith("redis:7")


@pytest.mark.parametrize("service", [*APPS, "nginx", "mlflow"])
def test_build_paths_exist(service):
    build = SERVICES[service]["build"]
    context = ROOT / build["context"]
    dockerfile = context / build["dockerfile"]
    assert dockerfile.is_file()
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (context / source).exists(), f"{dockerfile}: COPY {source} missing"


@pytest.mark.parametrize("service", APPS)
def test_app_env_uses_the_settings_names(service):
    names = set(SERVICES[service]["environment"])
    # PREFECT_API_URL is Prefect's own switch from ephemeral mode to a server.
    assert names - {"PREFECT_API_URL"} <= set(EXPORTED)
    required = {
        "MARIADB_HOST", "MARIADB_PORT", "MARIADB_DATABASE",
        "MARIADB_READER_USER", "MARIADB_READER_PASSWORD",
        "REDIS_URL", "MLFLOW_TRACKING_URI", "PREFECT_HOME", "API_ADMIN_TOKEN",
    }
    assert required <= names
    # Least privilege: only the worker (dbt, flows) and the consumer may write.
    writer = {"MARIADB_USER", "MARIADB_PASSWORD"}
    assert writer <= names if service in ("worker", "consumer") else not writer & names


def test_interpolated_variables_exist_in_stack_env():
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(INTERPOLATION.findall(text))
    assert used, "compose should take its secrets from .run/stack.env"
    assert used <= STACK_ENV_NAMES, used - STACK_ENV_NAMES


def test_mariadb_users_match_the_local_stack():
    env = SERVICES["mariadb"]["environment"]
    for name in ("MARIADB_USER", "MARIADB_READER_USER", "MARIADB_DATABASE"):
        default = INTERPOLATION.search(env[name]).group(0).split(":-")[1].rstrip("}")
        assert default == getattr(Settings(), name.lower())
    init = ROOT / "docker" / "mariadb-init" / "01-users.sh"
    assert "GRANT SELECT, SHOW VIEW" in init.read_text()



def test_mariadb_reads_the_tuning_the_local_stack_reads():
    """One file of server settings: compose mounts it where the image reads
    its configuration; scripts/stack.sh starts mariadbd with it alone."""
    tuning = "docker/mariadb/vgsales.cnf"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["mariadb"]["volumes"]}
    assert mounts["/etc/mysql/conf.d/vgsales.cnf"] == f"./{tuning}"
    assert f'--defaults-file="$ROOT/{tuning}"' in (ROOT / "scripts" / "stack.sh").read_text()
    settings = (ROOT / tuning).read_text()
    assert re.search(r"^character-set-server = utf8mb4$", settings, re.M)
    assert not any(arg.startswith("--character-set") or arg.startswith("--innodb")
                   for arg in SERVICES["mariadb"]["command"])


PORT = re.compile(r"(?P<ip>[\d.]+):(?P<host>\$\{[^}]+\}|\d+):(?P<container>\d+)")


def published(service: str) -> list[tuple[str, str, str]]:
    """(host ip, host port with defaults resolved, container port) per mapping."""
    rows = []
    for mapping in SERVICES[service].get("ports", []):
        port = PORT.fullmatch(mapping)
        assert port, f"{service}: unexpected port mapping {mapping!r}"
        host = port["host"]
        if host.startswith("${"):
            host = host.split(":-")[1].rstrip("}")
        rows.append((port["ip"], host, port["container"]))
    return rows


def test_ports_agree_with_local_stack_and_bind_loopback():
    assert published("mariadb") == [("127.0.0.1", stack_default("MARIADB_PORT"), "3306")]
    assert published("mlflow") == [("127.0.0.1", stack_default("MLFLOW_PORT"), "5000")]
    assert published("redis") == [("127.0.0.1", stack_default("REDIS_PORT"), "6379")]
    assert published("nginx") == [("127.0.0.1", str(Settings().api_port), "8000")]
    assert not any(published(replica) for replica in REPLICAS)  # through nginx only
    for service in SERVICES:
        for host_ip, _, _ in published(service):
            assert host_ip == "127.0.0.1", service


def test_the_registry_server_keeps_its_store_in_mariadb():
    """As scripts/stack.sh runs it: its own database and login on MariaDB
    (utf8mb4), artifacts served, the URI (a password) in the environment;
    every app reaches the registry through it."""
    service = SERVICES["mlflow"]
    assert service["command"][:2] == ["mlflow", "server"]
    assert "--serve-artifacts" in service["command"]
    database = re.search(r"^MLFLOW_DATABASE=(\S+)$", STACK_SH, re.M).group(1)
    login = re.search(r"^MLFLOW_DB_USER=(\S+)$", STACK_SH, re.M).group(1)
    uri = service["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert re.fullmatch(rf"mysql\+pymysql://{login}:\$\{{MLFLOW_DB_PASSWORD:\?[^}}]+\}}"
                        rf"@mariadb:3306/{database}\?charset=utf8mb4", uri), uri
    assert service["depends_on"]["mariadb"] == {"condition": "service_healthy"}
    init = (ROOT / "docker" / "mariadb-init" / "01-users.sh").read_text()
    assert f"CREATE DATABASE IF NOT EXISTS {database} CHARACTER SET utf8mb4" in init
    assert f"ON {database}.* TO '{login}'@'%'" in init
    mariadb_env = SERVICES["mariadb"]["environment"]
    assert mariadb_env["MLFLOW_DB_PASSWORD"].startswith("${MLFLOW_DB_PASSWORD")
    for app in APPS:
        assert SERVICES[app]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000", app
        assert "MLFLOW_DB_PASSWORD" not in str(SERVICES[app]["environment"]), app


def test_mariadb_tmpdir_is_a_volume_of_its_own():
    """Temporary tables live on a named volume, as under .run/ locally."""
    tmpdir = next(
        arg.split("=", 1)[1] for arg in SERVICES["mariadb"]["command"]
        if arg.startswith("--tmpdir=")
    )
    mounts = dict(v.split(":")[1::-1] for v in SERVICES["mariadb"]["volumes"])
    assert mounts[tmpdir] in COMPOSE["volumes"]
    assert "--tmpdir=" in STACK_SH


def test_redis_takes_the_stacks_users_without_persistence():
    command = SERVICES["redis"]["command"]
    assert command[command.index("--aclfile") + 1] == "/run/secrets/redis_users"
    assert SERVICES["redis"]["secrets"] == ["redis_users"]
    # The file scripts/stack.sh writes: the same users and passwords.
    assert COMPOSE["secrets"]["redis_users"]["file"] == ".run/redis/users.acl"
    assert '"$REDIS_DIR/users.acl"' in STACK_SH
    assert command[command.index("--save") + 1] == ""
    assert command[command.index("--appendonly") + 1] == "no"


def test_redis_has_the_stacks_limits_and_functions():
    """The same maxmemory, eviction policy and value limit as the local
    stack, and the stream's functions loaded from the file the code calls."""
    command = SERVICES["redis"]["command"]
    for flag, name in (("--maxmemory", "REDIS_MAXMEMORY"),
                       ("--maxmemory-policy", "REDIS_MAXMEMORY_POLICY"),
                       ("--proto-max-bulk-len", "REDIS_MAX_BULK")):
        assert command[command.index(flag) + 1] == re.search(
            rf"^{name}=(\S+)$", STACK_SH, re.M).group(1), flag
    mounts = dict(v.split(":")[1::-1] for v in SERVICES["redis"]["volumes"])
    start = mounts["/vgsales/start.sh"]
    assert SERVICES["redis"]["entrypoint"] == ["sh", "/vgsales/start.sh"]
    assert (ROOT / start).is_file()
    assert (ROOT / mounts["/vgsales/stream.lua"]).resolve() == LIBRARY.resolve()
    script = (ROOT / start).read_text()
    assert "FUNCTION LOAD REPLACE </vgsales/stream.lua" in script
    assert "/tmp/vgsales-functions-loaded" in " ".join(SERVICES["redis"]["healthcheck"]["test"])


@pytest.mark.parametrize(("service", "role"),
                         [*((r, "api") for r in REPLICAS), ("worker", "flows"), ("consumer", "drain")])
def test_app_services_log_in_to_redis_as_their_role(service, role):
    env = SERVICES[service]["environment"]
    assert env["REDIS_URL"].startswith(f"redis://vgsales_{role}:${{REDIS_{role.upper()}_PASSWORD")
    assert "REDIS_PASSWORD" not in str(env)  # the admin's


# A secret variable referred to (${X}, $X, $$X), or a flag that takes one.
SECRET_REFERENCE = re.compile(r"\$\$?\{?\w*(PASSWORD|TOKEN|SECRET|AUTH)", re.IGNORECASE)
SECRET_FLAGS = {"--requirepass", "--masterauth", "--pass", "-a", "--password"}


def test_no_secret_on_any_command_line():
    """Command lines are visible to `ps` and `docker inspect`: no service's
    command or healthcheck names a secret (interpolated or from the env)."""
    for name, service in SERVICES.items():
        words = [*(service.get("command") or []), *(service.get("entrypoint") or []),
                 *(service.get("healthcheck") or {}).get("test", [])]
        for word in map(str, words):
            assert not SECRET_REFERENCE.search(word), (name, word)
            assert not SECRET_FLAGS & set(word.split()), (name, word)
    init = (ROOT / "docker" / "mariadb-init" / "01-users.sh").read_text()
    assert not re.search(r"-p\s*\"?\$", init), "a password on the mariadb client's command line"


@pytest.mark.parametrize("service", [*APPS, "nginx"])
def test_commands_name_existing_modules(service):
    command = SERVICES[service]["command"]
    module = command[command.index("-m") + 1]
    package = ROOT / Path(*module.split("."))
    assert package.with_suffix(".py").is_file() or (package / "__main__.py").is_file(), module


def option_values(command: list[str], option: str) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command) if word == option]


def test_nginx_is_in_front_of_every_replica():
    """The nginx service renders its configuration with serve/edge/nginx.py
    (as `make serve` does) for exactly the replicas, on the port each
    listens on; each replica counts them all in API_INSTANCES, and its
    keep-alive outlasts nginx's (serve/edge/limits.py, one place for both)."""
    command = SERVICES["nginx"]["command"]
    assert command[command.index("-m") + 1] == "serve.edge.nginx"
    assert option_values(command, "--listen") == ["0.0.0.0:8000"]
    upstreams = option_values(command, "--upstream")
    expected = []
    for replica in REPLICAS:
        service = SERVICES[replica]
        assert service["command"][service["command"].index("-m") + 1] == "serve.instance"
        assert option_values(service["command"], "--host") == ["0.0.0.0"]
        expected += [f"{replica}:{port}" for port in option_values(service["command"], "--port")]
        assert service["environment"]["API_INSTANCES"] == str(len(REPLICAS))
    assert upstreams == expected
    assert set(SERVICES["nginx"]["depends_on"]) == set(REPLICAS)
    config = render("0.0.0.0:8000", [tuple(u.split(":")) for u in upstreams], Path("/prefix"))
    assert [f"server {u} " in config for u in upstreams] == [True] * len(upstreams)
