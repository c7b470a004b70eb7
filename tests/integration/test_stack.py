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

from ml.settings import ROOT, load_settings
from tests.helpers import connect, kill_pid_file

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
