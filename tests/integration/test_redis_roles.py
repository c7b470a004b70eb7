"""Least privilege in Redis: each component's ACL user is refused outside its role.

The stack (scripts/stack.sh) creates one user per role; the default user is
off. Allowed commands are run for real, on keys of a db of this test's own;
refused ones are asked with `ACL DRYRUN`, so nothing destructive runs even
if a rule were wrong (the assertion would fail instead).
"""

from __future__ import annotations

import dataclasses

import pytest
import redis
from dotenv import dotenv_values

from ml.monitoring.stream import STREAM
from ml.warehouse import snapshot
from tests.helpers import current_run

# The test's db in this run's block (tests/helpers.py TestRun): an absolute
# db would be the user's (0-15) and shared with another run on the stack.
REDIS_DB = 14
SNAPSHOT_KEY = f"{snapshot.KEY_PREFIX}:0123456789abcdef"
OTHER_KEY = "vgsales:something:else"
# What an attacker holding any role's password would try first.
NEVER = [
    ("FLUSHALL",), ("FLUSHDB",), ("SHUTDOWN",), ("CONFIG", "SET", "requirepass", "x"),
    ("REPLICAOF", "127.0.0.1", "1"), ("EVAL", "return 1", "1", OTHER_KEY), ("KEYS", "*"),
    ("ACL", "SETUSER", "intruder", "on", ">x", "+@all"), ("DEBUG", "SLEEP", "0"),
    ("MODULE", "LOAD", "/tmp/x.so"), ("SET", OTHER_KEY, "x"), ("GET", OTHER_KEY),
]
ROLES = {
    "api": {
        "allowed": [("GET", SNAPSHOT_KEY), ("STRLEN", SNAPSHOT_KEY), ("XADD", STREAM, "*", "k", "v")],
        "refused": [("SET", SNAPSHOT_KEY, "x"), ("DEL", SNAPSHOT_KEY), ("EXPIRE", SNAPSHOT_KEY, "1"),
                    ("XREADGROUP", "GROUP", "g", "c", "STREAMS", STREAM, ">"), ("XRANGE", STREAM, "-", "+"),
                    ("DEL", STREAM), ("XTRIM", STREAM, "MAXLEN", "0")],
    },
    "flows": {
        "allowed": [("SET", SNAPSHOT_KEY, "x"), ("GET", SNAPSHOT_KEY), ("EXPIRE", SNAPSHOT_KEY, "60"),
                    ("STRLEN", SNAPSHOT_KEY)],
        "refused": [("XADD", STREAM, "*", "k", "v"), ("XRANGE", STREAM, "-", "+"), ("DEL", STREAM),
                    ("DEL", SNAPSHOT_KEY), ("EVAL", "return 1", "0")],
    },
    "drain": {
        "allowed": [("XGROUP", "CREATE", STREAM, "roles", "0", "MKSTREAM"),
                    ("XREADGROUP", "GROUP", "roles", "c", "STREAMS", STREAM, ">"),
                    ("XACK", STREAM, "roles", "0-1"), ("XINFO", "STREAM", STREAM)],
        "refused": [("XADD", STREAM, "*", "k", "v"), ("GET", SNAPSHOT_KEY), ("SET", SNAPSHOT_KEY, "x"),
                    ("DEL", STREAM), ("XTRIM", STREAM, "MAXLEN", "0")],
    },
}


def run_db(settings) -> int:
    return current_run(settings.run_dir).redis_db(REDIS_DB)


@pytest.fixture(scope="module")
def admin(stack_settings):
    url = stack_settings.redis_url.rsplit("/", 1)[0] + f"/{run_db(stack_settings)}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def role_client(settings, role: str) -> redis.Redis:
    url = settings.redis_url_as(role).rsplit("/", 1)[0] + f"/{run_db(settings)}"
    return redis.Redis.from_url(url)


def dryrun(admin: redis.Redis, role: str, command: tuple) -> str:
    return admin.execute_command("ACL", "DRYRUN", f"vgsales_{role}", *command).decode()


@pytest.mark.parametrize("role", sorted(ROLES))
def test_each_role_does_its_job_and_nothing_else(stack_settings, admin, role):
    assert stack_settings.redis_url_as(role) != stack_settings.redis_url
    client = role_client(stack_settings, role)
    try:
        assert client.ping()
        for command in ROLES[role]["allowed"]:
            assert dryrun(admin, role, command) == "OK", command
            client.execute_command(*command)
        for command in ROLES[role]["refused"] + NEVER:
            verdict = dryrun(admin, role, command)
            assert verdict != "OK" and "no permissions" in verdict, (command, verdict)
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command("FLUSHALL")
    finally:
        client.close()


# The API and the drain change the stream's counters with scripts
# (ml/monitoring/stream.py); Redis checks each command a script runs against
# the caller's rules, so a script reaches no further than the user itself.
SCRIPTED = {
    "api": ("SET", "vgsales:something:else", "x"),
    "drain": ("XADD", STREAM, "*", "k", "v"),
}


@pytest.mark.parametrize("role", sorted(SCRIPTED))
def test_a_script_can_do_no_more_than_its_user(stack_settings, admin, role):
    command = SCRIPTED[role]
    script = "return redis.call(" + ", ".join(f"'{part}'" for part in command) + ")"
    entries = admin.xlen(STREAM)
    client = role_client(stack_settings, role)
    try:
        with pytest.raises(redis.exceptions.ResponseError,
                           match="(?i)perm|can.t access|can.t run|not allowed"):
            client.eval(script, 0)
    finally:
        client.close()
    assert admin.exists("vgsales:something:else") == 0
    assert admin.xlen(STREAM) == entries


def test_the_default_user_is_off(stack_settings, admin):
    port = admin.connection_pool.connection_kwargs["port"]
    anonymous = redis.Redis(host="127.0.0.1", port=port)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()
    password = dotenv_values(stack_settings.run_dir / "stack.env")["REDIS_PASSWORD"]
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port, password=password).ping()
    users = [line.decode().split()[1] for line in admin.execute_command("ACL", "LIST")]
    assert set(users) == {"default", "vgsales_admin", "vgsales_api", "vgsales_flows",
                          "vgsales_drain"}
    assert " off " in next(line.decode() for line in admin.execute_command("ACL", "LIST")
                           if line.startswith(b"user default "))


def test_the_api_settings_hold_only_the_api_user(stack_settings):
    api = stack_settings.for_api()
    assert api.redis_url == stack_settings.redis_url_as("api")
    assert api.redis_url.startswith("redis://vgsales_api:")
    secrets = dotenv_values(stack_settings.run_dir / "stack.env")
    for name in ("REDIS_PASSWORD", "REDIS_FLOWS_PASSWORD", "REDIS_DRAIN_PASSWORD"):
        assert secrets[name] not in str(dataclasses.asdict(api)), name
