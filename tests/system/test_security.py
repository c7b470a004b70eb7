"""Security properties, checked on the real stack and a real API process.

- Least privilege: the reader can only read; the writer only reaches the
  `vgsales%` databases; the API process holds no writer password (its
  environment as the kernel shows it, and its settings).
- Secrets: none in tracked files or history; on disk only in `.run/` files
  of mode 600 (and never on a service's command line).
- Services listen on loopback only (every listening socket of the stack).
- The API: no stack trace in a 500, models only from the configured registry.
  (Admin token, body and batch limits: tests/system/test_serve.py.)
- Identifiers in SQL text are quoted by SQLAlchemy (`ml.warehouse.identifiers`).

The private stack of tests/integration/test_stack.py covers Redis auth, bind settings and
the reader's insert/create/drop refusals; this module adds what it lacks.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pymysql
import pytest
from dotenv import dotenv_values

from ml.settings import ROOT, Settings
from ml.warehouse.identifiers import quoted
from serve.edge.limits import instance_ports, workers_per_instance
from serve.app import create_app
from tests.helpers import connect, current_run, free_api_ports, isolated_settings
from tests.unit.test_security_rules import SECRET_PATTERNS

REDIS_DB = 9
PREDICT_BODY = {"Platform": "Wii", "Year": 2008, "Genre": "Racing", "NA_Sales": 1.0,
                "EU_Sales": 0.5, "JP_Sales": 0.1, "Other_Sales": 0.1}


def live_secrets(settings: Settings) -> dict[str, str]:
    """The stack's generated secrets, by name (from .run/stack.env)."""
    values = dotenv_values(settings.run_dir / "stack.env")
    return {k: v for k, v in values.items() if k.endswith(("PASSWORD", "TOKEN", "AUTH_STRING")) and v}


def grants(settings: Settings, *, reader: bool) -> list[str]:
    with connect(settings, reader=reader) as connection, connection.cursor() as cursor:
        cursor.execute("show grants for current_user()")
        return [row[0] for row in cursor.fetchall()]


# -- least privilege -------------------------------------------------------------------


def test_reader_holds_select_and_show_view_only(stack_settings):
    statements = grants(stack_settings, reader=True)
    privileges = [re.match(r"GRANT (.+?) ON (\S+) TO", s).groups() for s in statements]
    # Granted by stack.sh on the stack's database name (the env may name another).
    stack_database = dotenv_values(stack_settings.run_dir / "stack.env")["MARIADB_DATABASE"]
    assert ("USAGE", "*.*") in privileges
    assert ("SELECT, SHOW VIEW", f"`{stack_database}%`.*") in privileges
    assert len(privileges) == 2, statements
    assert not any("WITH GRANT OPTION" in s for s in statements)


def test_writer_holds_nothing_beyond_its_databases(stack_settings):
    statements = grants(stack_settings, reader=False)
    global_grants = [s for s in statements if " ON *.* " in s]
    assert all(s.startswith("GRANT USAGE ON *.*") for s in global_grants), global_grants
    assert not any("WITH GRANT OPTION" in s for s in statements)
    with connect(stack_settings) as connection, connection.cursor() as cursor:
        for statement, code in (
            ("select count(*) from mysql.user", 1142),
            ("create database outside_vgsales", 1044),
        ):
            with pytest.raises(pymysql.err.MySQLError) as refused:
                cursor.execute(statement)
            assert refused.value.args[0] == code, statement


@pytest.fixture(scope="module")
def scratch_table(stack_settings):
    """`<this run's security database>.guarded` with one row, made by the writer."""
    database = current_run(stack_settings.run_dir).database("security")
    with connect(stack_settings) as connection, connection.cursor() as cursor:
        cursor.execute(f"create database if not exists {quoted(database)}")
        cursor.execute(f"create or replace table {quoted(database, 'guarded')} (x int)")
        cursor.execute(f"insert into {quoted(database, 'guarded')} values (1)")
    yield database
    with connect(stack_settings) as connection, connection.cursor() as cursor:
        cursor.execute(f"drop database if exists {quoted(database)}")


def test_reader_cannot_change_or_export_the_warehouse(stack_settings, scratch_table, tmp_path):
    table = quoted(scratch_table, "guarded")
    data = tmp_path / "rows.csv"
    data.write_text("2\n")
    attempts = [
        f"update {table} set x = 2",
        f"delete from {table}",
        f"truncate table {table}",
        f"alter table {table} add column y int",
        f"rename table {table} to {quoted(scratch_table, 'renamed')}",
        f"create view {quoted(scratch_table, 'v')} as select * from {table}",
        f"grant select on {table} to current_user()",
        f"select * from {table} into outfile '{tmp_path / 'out.csv'}'",
        f"load data local infile '{data}' into table {table}",
    ]
    with connect(stack_settings, reader=True, local_infile=True) as connection:
        with connection.cursor() as cursor:
            for statement in attempts:
                with pytest.raises(pymysql.err.MySQLError) as refused:
                    cursor.execute(statement)
                # Denied (1142 table, 1044 database, 1045 FILE, 1227 privilege,
                # 1370 routine), never a syntax or missing-table error.
                assert refused.value.args[0] in (1044, 1045, 1142, 1227, 1370), (
                    statement, refused.value.args)
            cursor.execute(f"select * from {table}")
            assert cursor.fetchall() == ((1,),)
    assert not (tmp_path / "out.csv").exists()


def test_for_api_drops_only_the_writer_password(stack_settings):
    api = stack_settings.for_api()
    assert stack_settings.mariadb_password.get_secret_value()
    assert api.mariadb_password.get_secret_value() == ""
    assert api.mariadb_reader_password == stack_settings.mariadb_reader_password
    assert api.sqlalchemy_url(reader=True) == stack_settings.sqlalchemy_url(reader=True)


# -- the API process -------------------------------------------------------------------


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


def descendants(pid: int) -> list[int]:
    """Every process under `pid`: nginx's and the instances' masters and workers."""
    found = children(pid)
    return found + [d for child in found for d in descendants(child)]


def command_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def api(stack_settings, tmp_path_factory):
    """`python -m serve` started the way `make serve` starts it: with every
    setting, the writer's password included, in its environment. Its MLflow
    registry is empty; the user's (.run/mlflow) may hold champions."""
    home = tmp_path_factory.mktemp("security-api")
    settings = dataclasses.replace(
        free_api_ports(isolated_settings(stack_settings, "security", REDIS_DB, home)),
        api_admin_token="security-test-token",
    )
    env = {**os.environ, **settings.as_env()}
    assert env["MARIADB_PASSWORD"] == stack_settings.mariadb_password.get_secret_value()
    log = home / "gunicorn.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "serve"], cwd=ROOT, env=env,
        stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    try:
        wait_for_processes(settings, process, log)
        yield settings, process, log
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_api_processes_hold_no_writer_credentials(stack_settings, api):
    settings, process, _ = api
    pids = [process.pid, *descendants(process.pid)]
    nginx = [pid for pid in pids if command_of(pid).startswith("nginx: ")]
    assert len(nginx) == 2, [command_of(pid) for pid in pids]
    password = stack_settings.mariadb_password.get_secret_value().encode()
    secrets = [v.encode() for v in live_secrets(stack_settings).values()]
    others = [dotenv_values(stack_settings.run_dir / "stack.env")[name].encode()
              for name in ("REDIS_PASSWORD", "REDIS_FLOWS_PASSWORD", "REDIS_DRAIN_PASSWORD")]
    for pid in pids:
        environ_bytes = Path(f"/proc/{pid}/environ").read_bytes()
        assert not [secret for secret in others if secret in environ_bytes], pid
        environ = environ_bytes.split(b"\0")
        names = {entry.split(b"=", 1)[0] for entry in environ}
        assert b"MARIADB_PASSWORD" not in names and b"MARIADB_USER" not in names, pid
        if pid in nginx:  # nginx needs no setting at all
            assert not [secret for secret in secrets if secret in environ_bytes], pid
        else:
            assert b"MARIADB_READER_PASSWORD" in names  # the rest of the settings got through
        assert not any(password in entry for entry in environ), pid
        assert password not in Path(f"/proc/{pid}/cmdline").read_bytes()
    status, body = get(settings.api_port, "/model")
    assert status == 200 and password not in body


def wait_for_processes(settings: Settings, process: subprocess.Popen, log: Path) -> None:
    """Until nginx answers `/health` and every process of the API is up: the
    launcher, nginx's master and worker, each instance's master and workers.
    Probed from the start: nginx listens only once every instance answers,
    so no probe meets an nginx with no instance to send it to (a 502, after
    which nginx would leave the instances out for FAILED_INSTANCE_SECONDS)."""
    expected = 1 + 2 + settings.api_instances * (1 + workers_per_instance(settings))
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        try:
            status = get(settings.api_port, "/health")[0]
        except OSError:
            status = None  # not listening yet
        assert status in (None, 200), (status, log.read_text()[-3000:])
        if status == 200 and 1 + len(descendants(process.pid)) == expected:
            return
        time.sleep(0.5)


@pytest.mark.parametrize("started", ["stack.env exported", "scripts/with-env"])
def test_the_redis_admin_password_never_reaches_an_api_process(stack_settings, started,
                                                               tmp_path):
    """Started with every secret of `.run/stack.env` in its environment, as a
    user's shell (`set -a; . .run/stack.env`) or `make serve`
    (`scripts/with-env`) starts it, no API process holds the Redis admin's
    password or any other secret but its own."""
    env_file = stack_settings.run_dir / "stack.env"
    settings = free_api_ports(stack_settings)
    # Only the ports are moved (the user's own API may hold the recorded ones).
    ports = f"API_PORT={settings.api_port} API_INSTANCE_PORT={settings.api_instance_port}"
    command = {
        "stack.env exported": ["bash", "-c", f'set -a; . "{env_file}"; set +a; '
                               f'{ports} exec "{sys.executable}" -m serve'],
        "scripts/with-env": ["bash", "-c", f'{ports} exec "{ROOT / "scripts" / "with-env"}" '
                             "python -m serve"],
    }[started]
    secrets = dotenv_values(env_file)
    admin = secrets["REDIS_PASSWORD"].encode()
    log = tmp_path / "api.log"
    process = subprocess.Popen(command, cwd=ROOT, stdout=log.open("w"),
                               stderr=subprocess.STDOUT)
    try:
        wait_for_processes(settings, process, log)
        python_processes = 0
        for pid in [process.pid, *descendants(process.pid)]:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            # Named, not shown: a failure must not print the secrets.
            held = [name for name in ("REDIS_PASSWORD", "MARIADB_PASSWORD", "REDIS_FLOWS_PASSWORD",
                                      "REDIS_DRAIN_PASSWORD", "PREFECT_API_AUTH_STRING")
                    if secrets[name].encode() in environ]
            assert not held, (started, pid, held)
            # nginx's processes keep no environment; every Python one reaches Redis as the API.
            urls = [entry for entry in environ.split(b"\0") if entry.startswith(b"REDIS_URL=")]
            assert all(url.startswith(b"REDIS_URL=redis://vgsales_api:") for url in urls), (started, pid)
            python_processes += b"python" in Path(f"/proc/{pid}/cmdline").read_bytes()
            in_cmdline = admin in Path(f"/proc/{pid}/cmdline").read_bytes()
            assert not in_cmdline, (started, pid)
        # The launcher and every instance's master and workers were looked at.
        assert python_processes == 1 + settings.api_instances * (1 + workers_per_instance(settings)), \
            python_processes
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_api_serves_only_from_its_configured_registry(api):
    settings, _, log = api
    internals = (settings.mlflow_tracking_uri, str(settings.run_dir), str(ROOT), "sqlite")
    for _ in range(20):  # new connections: every worker answers some
        status, body = get(settings.api_port, "/ready")
        ready = json.loads(body)
        # Its own registry is empty: nothing is served, whatever other registries hold.
        assert status == 503 and not ready["ready"]
        assert set(ready["models"].values()) == {None}
        assert all(any(repr(name) in p for p in ready["problems"]) for name in ready["models"])
        # Public answers say what to do, not where the registry lives.
        assert not [leak for leak in internals if leak in body.decode()]
        connection = http.client.HTTPConnection("127.0.0.1", settings.api_port, timeout=30)
        try:
            connection.request("POST", "/predict", json.dumps(PREDICT_BODY).encode(),
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            status, body = response.status, response.read().decode()
        finally:
            connection.close()
        assert status == 503 and not [leak for leak in internals if leak in body]
    # The registry asked is named in the server's log instead.
    assert settings.mlflow_tracking_uri in log.read_text()


def test_an_internal_error_answers_without_a_stack_trace(stack_settings, tmp_path):
    settings = isolated_settings(stack_settings, "security", REDIS_DB, tmp_path)
    app = create_app(settings)
    assert app.extensions["vgsales"].state._settings.mariadb_password.get_secret_value() == ""

    def broken():
        raise RuntimeError(f"leaky detail {settings.mariadb_reader_password.get_secret_value()}")

    app.add_url_rule("/broken", view_func=broken)
    response = app.test_client().get("/broken")
    body = response.get_data(as_text=True)
    assert response.status_code == 500
    assert json.loads(body)["error"] == "internal_error"
    reader_password = settings.mariadb_reader_password.get_secret_value()
    for leak in ("Traceback", "leaky detail", reader_password, ".py"):
        assert leak not in body


# -- secrets on disk and in the repository -----------------------------------------------


def tracked_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    return [ROOT / name.decode() for name in names if name]


def test_no_secret_in_tracked_files_or_history(stack_settings):
    secrets = live_secrets(stack_settings)
    assert {"MARIADB_PASSWORD", "MARIADB_READER_PASSWORD", "REDIS_PASSWORD",
            "API_ADMIN_TOKEN"} <= set(secrets)
    found = []
    for path in tracked_files():
        if not path.is_file():
            continue  # deleted in the working tree, not yet committed
        content = path.read_bytes()
        found += [(path, name) for name, v in secrets.items() if v.encode() in content]
        found += [(path, kind) for kind, pattern in SECRET_PATTERNS.items()
                  if pattern.search(content)]
    assert not found, found
    history = subprocess.run(
        ["git", "log", "--all", "-p"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    assert not [name for name, v in secrets.items() if v.encode() in history]
    ignored = subprocess.run(["git", "check-ignore", "-q", ".run/stack.env"], cwd=ROOT)
    assert ignored.returncode == 0, ".run/ must stay out of git (.gitignore)"


# Files that hold secrets by design: the stack's settings, Redis's config and users.
SECRET_FILES = ("stack.env", "redis/redis.conf", "redis/users.acl")


def test_secrets_on_disk_only_in_private_run_files(stack_settings):
    run_dir = stack_settings.run_dir
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    for name in SECRET_FILES:
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((run_dir / "mariadb").stat().st_mode) == 0o700
    secrets = [v.encode() for v in live_secrets(stack_settings).values()]
    # Everything generated besides the database files (700, hashes only):
    # dbt targets and logs, MLflow, Prefect, the API's instance folders.
    roots = [run_dir, ROOT / "dbt_project" / "target", ROOT / "dbt_project" / "logs"]
    holders = []
    for root in roots:
        for path in root.rglob("*") if root.exists() else ():
            if run_dir / "mariadb" in path.parents or not path.is_file():
                continue
            try:
                content = path.read_bytes()
            except (FileNotFoundError, PermissionError):
                continue  # written or removed by a concurrent run
            if any(secret in content for secret in secrets):
                holders.append(str(path.relative_to(ROOT) if ROOT in path.parents else path))
    allowed = {str((run_dir / name).relative_to(ROOT)) for name in SECRET_FILES}
    assert set(holders) <= allowed, set(holders) - allowed


def stack_pids(settings: Settings) -> dict[str, int]:
    return {
        name: int((settings.run_dir / pidfile).read_text())
        for name, pidfile in (("mariadb", "mariadb/mariadb.pid"), ("redis", "redis/redis.pid"))
    }


def test_no_secret_on_a_service_command_line(stack_settings):
    secrets = [v.encode() for v in live_secrets(stack_settings).values()]
    for name, pid in stack_pids(stack_settings).items():
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert cmdline, name
        assert not any(secret in cmdline for secret in secrets), name


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of the TCP sockets `pid` listens on, IPv4 and IPv6."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                found.add((_address(address), int(port, 16)))
    return found


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def test_services_listen_on_loopback_only(stack_settings):
    pids = stack_pids(stack_settings)
    for name, pid in pids.items():
        sockets = listening(pid)
        assert sockets, name
        assert {address for address, _ in sockets} == {"127.0.0.1"}, (name, sockets)
    assert ("127.0.0.1", stack_settings.mariadb_port) in listening(pids["mariadb"])


def test_the_api_listens_on_loopback_only(api):
    """nginx on API_PORT, each instance on its own port: loopback, nothing else."""
    settings, process, _ = api
    sockets = set()
    for pid in [process.pid, *descendants(process.pid)]:
        sockets |= listening(pid)
    expected = {("127.0.0.1", port) for port in [settings.api_port, *instance_ports(settings)]}
    assert sockets == expected
