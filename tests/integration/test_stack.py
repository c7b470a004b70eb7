"""The local stack for real: a private instance under a temporary run dir.

A separate instance (own ports, own .run) is used so that killing MariaDB here
cannot disturb the shared stack other tests use.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pymysql
import pytest
import redis

from ml.modeling import champions, evaluate, registry, train
from ml.settings import ROOT, load_settings
from tests.helpers import connect, kill_pid_file
from tests.mart_sample import mart_frame

STACK = ROOT / "scripts" / "stack.sh"


def test_up_is_idempotent_and_status_reports(private_stack):
    stack, settings, _ = private_stack
    again = stack("up")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stderr
    status = stack("status")
    assert status.returncode == 0
    assert f"127.0.0.1:{settings.mariadb_port}" in status.stdout
    assert "redis:   running" in status.stdout
    assert "mlflow:  running" in status.stdout


def test_mariadb_temporary_files_live_under_the_run_dir(private_stack):
    _, settings, run_dir = private_stack
    with connect(settings, reader=True) as connection, connection.cursor() as cursor:
        cursor.execute("select @@tmpdir")
        (tmpdir,) = cursor.fetchone()
    assert Path(tmpdir).resolve().is_relative_to(run_dir.resolve())
    assert Path(tmpdir).is_dir()


def test_env_file_is_private_and_complete(private_stack):
    _, settings, run_dir = private_stack
    env_file = run_dir / "stack.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    text = env_file.read_text()
    for name in (
        "MARIADB_HOST", "MARIADB_PORT", "MARIADB_DATABASE", "MARIADB_USER",
        "MARIADB_PASSWORD", "MARIADB_READER_USER", "MARIADB_READER_PASSWORD",
        "REDIS_URL", "MLFLOW_TRACKING_URI", "PREFECT_HOME",
    ):
        assert f"\n{name}=" in text, name
    assert len(settings.mariadb_password.get_secret_value()) >= 32
    assert settings.mariadb_password != settings.mariadb_reader_password


def test_env_overrides_file(private_stack):
    _, _, run_dir = private_stack
    settings = load_settings(
        environ={"VGSALES_RUN_DIR": str(run_dir), "MARIADB_DATABASE": "vgsales_other"}
    )
    assert settings.mariadb_database == "vgsales_other"
    assert settings.mariadb_reader_user == "vgsales_reader"


def test_writer_round_trips_utf8mb4(private_stack):
    _, settings, _ = private_stack
    with (
        connect(settings, database=settings.mariadb_database) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("select @@character_set_server, @@collation_server")
        assert cur.fetchone() == ("utf8mb4", "utf8mb4_unicode_ci")
        cur.execute("create or replace table names (name varchar(64))")
        cur.execute("insert into names values (%s)", ("Pokémon α 🎮",))
        cur.execute("select name from names")
        assert cur.fetchone() == ("Pokémon α 🎮",)


def test_reader_can_read_but_not_write(private_stack):
    _, settings, _ = private_stack
    with (
        connect(settings, database=settings.mariadb_database) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("create or replace table readable (x int)")
        cur.execute("insert into readable values (1)")
    with (
        connect(settings, reader=True, database=settings.mariadb_database) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("select count(*) from readable")
        assert cur.fetchone() == (1,)
        for statement in (
            "insert into readable values (2)",
            "create table nope (x int)",
            "drop table readable",
            "create database vgsales_nope",
        ):
            with pytest.raises(pymysql.err.OperationalError) as err:
                cur.execute(statement)
            assert err.value.args[0] in (1142, 1044), statement


def test_redis_requires_auth_and_keeps_nothing(private_stack):
    _, settings, _ = private_stack
    url = settings.redis_url
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    anonymous = redis.Redis(host="127.0.0.1", port=port)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()
    client = redis.Redis.from_url(url)
    assert client.ping()
    assert client.config_get("save")["save"] == ""
    assert client.config_get("appendonly")["appendonly"] == "no"
    assert client.config_get("bind")["bind"] == "127.0.0.1"


def test_the_registry_server_keeps_versions_in_mariadb_and_serves_artifacts(private_stack):
    _, settings, run_dir = private_stack
    assert settings.mlflow_tracking_uri.startswith("http://127.0.0.1:")
    frame = mart_frame(600, seed=3)
    fitted = train.fit("global_from_regional", frame)
    registered = registry.register(fitted, evaluate.evaluate(fitted, frame), settings)
    assert registered.promoted
    client = champions.client(settings)
    # Uploaded through the server, which keeps them under the run dir: a
    # client on another host needs no shared folder.
    location = client.get_experiment_by_name("global_from_regional").artifact_location
    assert location.startswith("mlflow-artifacts:")
    stored = run_dir / "mlflow" / "served-artifacts"
    assert list(stored.rglob(champions.MODEL_FILE))
    # What an API instance does, with the settings it gets.
    loaded = champions.load_champion_with_info("global_from_regional", settings.for_api())
    assert loaded.info.version == registered.version
    champions.verify_stored("global_from_regional", registered.version, settings)
    # The versions live in the server's own database, which its login alone reaches.
    env = dict(line.split("=", 1) for line in (run_dir / "stack.env").read_text().splitlines()
               if "=" in line and not line.startswith("#"))
    password = env["MLFLOW_DB_PASSWORD"].strip("'")
    with pymysql.connect(host="127.0.0.1", port=settings.mariadb_port, user="vgsales_mlflow",
                         password=password, database="mlflow") as conn, conn.cursor() as cur:
        cur.execute("select name, version from model_versions")
        assert cur.fetchall() == (("global_from_regional", registered.version),)
    with connect(settings) as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError):
            cur.execute("select count(*) from mlflow.model_versions")
    # Its password is given in the server's environment, never on a command line.
    pid = (run_dir / "mlflow" / "server.pid").read_text().strip()
    assert password not in Path(f"/proc/{pid}/cmdline").read_text()


def test_an_older_sqlite_registry_is_kept_and_the_uri_moves_to_the_server(private_stack):
    stack, settings, run_dir = private_stack
    env_file = run_dir / "stack.env"
    old_store = run_dir / "mlflow" / "mlflow.db"
    old_store.write_bytes(b"an older checkout's registry")
    server_uri = settings.mlflow_tracking_uri
    text = env_file.read_text()
    env_file.write_text(text.replace(f"MLFLOW_TRACKING_URI='{server_uri}'",
                                     f"MLFLOW_TRACKING_URI='sqlite:///{old_store}'"))
    moved = stack("up")
    assert moved.returncode == 0, moved.stderr
    assert "SQLite store is kept" in moved.stderr
    assert old_store.read_bytes() == b"an older checkout's registry"
    moved_to = load_settings(environ={"VGSALES_RUN_DIR": str(run_dir)}).mlflow_tracking_uri
    assert moved_to == server_uri


def test_recovers_after_kill_9_and_down_up(private_stack):
    stack, settings, run_dir = private_stack
    kill_pid_file(run_dir / "mariadb" / "mariadb.pid")
    recovered = stack("up")
    assert recovered.returncode == 0, recovered.stderr
    with (
        connect(settings, database=settings.mariadb_database) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("select count(*) from names")
        assert cur.fetchone() == (1,)
    assert stack("down").returncode == 0
    assert stack("status").returncode != 0
    assert stack("up").returncode == 0
    with (
        connect(settings, reader=True, database=settings.mariadb_database) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("select name from names")
        assert cur.fetchone() == ("Pokémon α 🎮",)
