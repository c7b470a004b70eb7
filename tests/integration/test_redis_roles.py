"""Least privilege in Redis: each component's ACL user is refused outside its role,
and each attack on the prediction log with a role's password fails.

The stack (scripts/stack.sh) creates one user per role; the default user is
off. Allowed commands are run for real, on keys of a db of this test's own;
refused ones are asked with `ACL DRYRUN` first, so nothing destructive runs
even if a rule were wrong (the assertion would fail instead). Then each
attack is run for real, as the role, and the stream is checked unharmed.
Memory limits are checked on a private redis-server started with the
stack's own settings, so filling it disturbs nobody.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import subprocess
import time

import pytest
import redis
import sqlalchemy as sa
from dotenv import dotenv_values

from ml.monitoring import stream
from ml.monitoring.drain import drain
from ml.monitoring.stream import APPEND, SETTLE, STREAM
from ml.settings import ROOT, Settings
from ml.warehouse import snapshot
from serve.prediction_log import PredictionLog
from tests.helpers import create_landing_tables, current_run, free_port, isolated_settings

# The test's db in this run's block (tests/helpers.py TestRun): an absolute
# db would be the user's (0-15) and shared with another run on the stack.
REDIS_DB = 14
SNAPSHOT_KEY = f"{snapshot.KEY_PREFIX}:0123456789abcdef"
OTHER_KEY = "vgsales:something:else"
OLD_COUNTERS = ("vgsales:predictions:bytes", "vgsales:predictions:dropped",
                "vgsales:predictions:dropped_reported")
BUSY_LOOP = "local i = 0 while true do i = i + 1 end"
STACK_SH = (ROOT / "scripts" / "stack.sh").read_text()
# What an attacker holding any role's password would try first.
NEVER = [
    ("FLUSHALL",), ("FLUSHDB",), ("SHUTDOWN",), ("CONFIG", "SET", "maxmemory", "0"),
    ("REPLICAOF", "127.0.0.1", "1"), ("EVAL", BUSY_LOOP, "1", STREAM), ("KEYS", "*"),
    ("ACL", "SETUSER", "intruder", "on", ">x", "+@all"), ("DEBUG", "SLEEP", "0"),
    ("MODULE", "LOAD", "/tmp/x.so"), ("SET", OTHER_KEY, "x"), ("GET", OTHER_KEY),
    ("SET", STREAM, "x"), ("GETSET", STREAM, "x"), ("INCRBY", STREAM, "1"),
    ("DEL", STREAM), ("RENAME", STREAM, OTHER_KEY), ("XTRIM", STREAM, "MAXLEN", "0"),
    ("XSETID", STREAM, "99999999999999-0"), ("EVALSHA", "0" * 40, "1", STREAM),
    ("FUNCTION", "LOAD", f"#!lua name=x\nredis.register_function('x', function() {BUSY_LOOP} end)"),
    ("FUNCTION", "DELETE", stream.LIBRARY_NAME), ("FUNCTION", "FLUSH"),
    ("SCRIPT", "LOAD", BUSY_LOOP),
    *[(command, key, "1") for key in OLD_COUNTERS for command in ("SET", "INCRBY", "GETSET")],
]
ROLES = {
    "api": {
        "allowed": [("GET", SNAPSHOT_KEY), ("STRLEN", SNAPSHOT_KEY),
                    ("XADD", STREAM, "*", "k", "v"), ("MEMORY", "USAGE", STREAM),
                    ("FCALL", APPEND, "1", STREAM, "0", "0", "1", "k")],
        "refused": [("SET", SNAPSHOT_KEY, "x"), ("DEL", SNAPSHOT_KEY), ("EXPIRE", SNAPSHOT_KEY, "1"),
                    ("XREADGROUP", "GROUP", "g", "c", "STREAMS", STREAM, ">"),
                    ("XRANGE", STREAM, "-", "+"), ("XDEL", STREAM, "0-1"),
                    ("XACK", STREAM, "g", "0-1"), ("XGROUP", "CREATE", STREAM, "g", "$"),
                    ("XGROUP", "DESTROY", STREAM, "g"), ("FCALL", SETTLE, "1", STREAM, "g"),
                    ("FCALL_RO", APPEND, "1", STREAM)],
    },
    "flows": {
        "allowed": [("SET", SNAPSHOT_KEY, "x"), ("GET", SNAPSHOT_KEY), ("EXPIRE", SNAPSHOT_KEY, "60"),
                    ("STRLEN", SNAPSHOT_KEY)],
        "refused": [("XADD", STREAM, "*", "k", "v"), ("XRANGE", STREAM, "-", "+"), ("DEL", STREAM),
                    ("DEL", SNAPSHOT_KEY), ("FCALL", APPEND, "1", STREAM)],
    },
    "drain": {
        "allowed": [("XGROUP", "CREATE", STREAM, "roles", "0", "MKSTREAM"),
                    ("XREADGROUP", "GROUP", "roles", "c", "STREAMS", STREAM, ">"),
                    ("XACK", STREAM, "roles", "0-1"), ("XDEL", STREAM, "0-1"),
                    ("XLEN", STREAM), ("XINFO", "GROUPS", STREAM),
                    ("XGROUP", "SETID", STREAM, "roles", "0"),
                    ("FCALL", SETTLE, "1", STREAM, "roles")],
        "refused": [("XADD", STREAM, "*", "k", "v"), ("GET", SNAPSHOT_KEY), ("SET", SNAPSHOT_KEY, "x"),
                    ("FCALL", APPEND, "1", STREAM), ("MEMORY", "USAGE", STREAM),
                    ("XGROUP", "DESTROY", STREAM, "roles"), ("XCLAIM", STREAM, "roles", "c", "0", "0-1")],
    },
}


def run_db(settings) -> int:
    return current_run(settings.run_dir).redis_db(REDIS_DB)


def db_url(url: str, db: int) -> str:
    return url.rsplit("/", 1)[0] + f"/{db}"


@pytest.fixture(scope="module")
def admin(stack_settings):
    client = redis.Redis.from_url(db_url(stack_settings.redis_url, run_db(stack_settings)))
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def clean(admin):
    admin.flushdb()
    return admin


def role_client(settings, role: str, **kwargs) -> redis.Redis:
    return redis.Redis.from_url(db_url(settings.redis_url_as(role), run_db(settings)), **kwargs)


def dryrun(admin: redis.Redis, role: str, command: tuple) -> str:
    return admin.execute_command("ACL", "DRYRUN", f"vgsales_{role}", *command).decode()


def entry(request_id: str) -> dict[str, bytes]:
    return stream.encode_entry(time.time(), "/predict", request_id, "global_from_regional", "1",
                               [{"platform": "Wii"}], [1.5], [[]])


@pytest.fixture(scope="module")
def landing(stack_settings, seeds_dir, tmp_path_factory) -> Settings:
    """Settings whose drain reads this test's db and lands in a database of
    its own, holding only the landing tables."""
    home = tmp_path_factory.mktemp("redis-roles")
    settings = dataclasses.replace(isolated_settings(stack_settings, "redis_roles", REDIS_DB, home),
                                   vgsales_seeds_dir=str(seeds_dir))
    create_landing_tables(settings, home / "target")
    return settings


@pytest.mark.parametrize("role", sorted(ROLES))
def test_each_role_does_its_job_and_nothing_else(stack_settings, clean, role):
    assert stack_settings.redis_url_as(role) != stack_settings.redis_url
    client = role_client(stack_settings, role)
    try:
        assert client.ping()
        for command in ROLES[role]["allowed"]:
            assert dryrun(clean, role, command) == "OK", command
            client.execute_command(*command)
        for command in ROLES[role]["refused"] + NEVER:
            verdict = dryrun(clean, role, command)
            assert verdict != "OK" and "no permissions" in verdict, (command, verdict)
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command("FLUSHALL")
    finally:
        client.close()


def test_the_stacks_functions_are_the_checkouts(admin):
    """`stack.sh up` loaded stream.lua, the file this code calls."""
    assert stream.functions_loaded(admin)


# -- attacks with the API's password ------------------------------------------------------


def test_api_cannot_replace_the_stream(stack_settings, clean):
    stream.append(clean, [(entry("victim"), 1)], max_bytes=1 << 30)
    attacker = role_client(stack_settings, "api")
    try:
        for command in (("SET", STREAM, "x"), ("GETSET", STREAM, "x"), ("DEL", STREAM),
                        ("RENAME", STREAM, OTHER_KEY), ("XTRIM", STREAM, "MAXLEN", "0")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                attacker.execute_command(*command)
    finally:
        attacker.close()
    assert clean.type(STREAM) == b"stream" and clean.xlen(STREAM) == 1


@pytest.mark.parametrize("forged", [10**15, -10**15])
def test_api_cannot_forge_the_byte_accounting(stack_settings, clean, forged):
    """The cap is measured by Redis (MEMORY USAGE of the stream), not kept in
    a key: the old counter's key is refused, so honest writers are neither
    shut out (10^15) nor let past the cap (-10^15)."""
    attacker = role_client(stack_settings, "api")
    try:
        for key in OLD_COUNTERS:
            for command in (("SET", key, forged), ("INCRBY", key, forged), ("GETSET", key, forged)):
                with pytest.raises(redis.exceptions.NoPermissionError):
                    attacker.execute_command(*command)
        # The caller's own cap argument binds only that caller's entries.
        assert stream.append(attacker, [(entry("attacker"), 1)], max_bytes=10**15) == (1, 0)
    finally:
        attacker.close()
    assert not any(clean.exists(key) for key in OLD_COUNTERS)
    honest = role_client(stack_settings, "api")
    try:
        used = clean.memory_usage(STREAM)
        assert stream.append(honest, [(entry("honest"), 1)], max_bytes=used + 10_000) == (1, 0)
        # Past the cap Redis measures, honest entries are refused, whatever was tried.
        assert stream.append(honest, [(entry("late"), 1)] * 3, max_bytes=used) == (0, 3)
    finally:
        honest.close()


def test_api_cannot_run_lua_of_its_own(stack_settings, clean):
    """No EVAL, no FUNCTION, no other function: a busy loop cannot be sent.
    The one function it may call checks its arguments before writing and
    takes a bounded number of entries."""
    attacker = role_client(stack_settings, "api", socket_timeout=5)
    try:
        for command in (("EVAL", BUSY_LOOP, "0"), ("SCRIPT", "LOAD", BUSY_LOOP),
                        ("FUNCTION", "LOAD", "REPLACE", f"#!lua name={stream.LIBRARY_NAME}\n"
                         f"redis.register_function('{APPEND}', function() {BUSY_LOOP} end)"),
                        ("FCALL", SETTLE, "1", STREAM, stream.GROUP)):
            with pytest.raises(redis.exceptions.NoPermissionError):
                attacker.execute_command(*command)
        too_many = [0, 0, 1, "k"] + ["1", "v"] * 1025
        with pytest.raises(redis.exceptions.ResponseError, match="at most 1024 entries"):
            attacker.fcall(APPEND, 1, STREAM, *too_many)
        with pytest.raises(redis.exceptions.ResponseError, match="whole number"):
            attacker.fcall(APPEND, 1, STREAM, 0, 0, 1, "k", "-1", "v")
        assert attacker.ping()
    finally:
        attacker.close()
    assert clean.xlen(STREAM) == 0
    assert stream.functions_loaded(clean)


@pytest.mark.parametrize("role", ["api", "drain"])
def test_a_50_mb_value_is_refused(stack_settings, clean, role):
    """Redis takes no single value over 32 MiB (proto-max-bulk-len), from anyone."""
    attacker = role_client(stack_settings, role, socket_timeout=30)
    big = b"x" * (50 * 1024 * 1024)
    command = (("XADD", STREAM, "*", "k", big) if role == "api"
               else ("XGROUP", "CREATE", STREAM, big, "0", "MKSTREAM"))
    try:
        with pytest.raises(redis.RedisError) as refused:
            attacker.execute_command(*command)
        assert "bulk" in str(refused.value).lower() or isinstance(
            refused.value, redis.exceptions.ConnectionError)
    finally:
        attacker.close()
    assert clean.exists(STREAM) == 0
    assert int(clean.config_get("proto-max-bulk-len")["proto-max-bulk-len"]) == 32 * 1024 * 1024


def test_entries_trimmed_by_xadd_are_counted_as_vanished(stack_settings, landing, clean):
    """XADD's MAXLEN (or MINID) is the one way the API role can still delete
    entries; the drain counts every entry trimmed before it read it, once,
    and lands the count."""
    settings = landing
    assert settings.redis_url == db_url(stack_settings.redis_url, run_db(stack_settings))
    drain(settings, log=lambda line: None)  # the group, as the consumer creates it
    writer = role_client(stack_settings, "api")
    try:
        stream.append(writer, [(entry(f"victim-{n}"), 1) for n in range(5)], max_bytes=1 << 30)
        writer.xadd(STREAM, {"k": "attacker"}, maxlen=1, approximate=False)
    finally:
        writer.close()
    outcome = drain(settings, log=lambda line: None)
    assert (outcome.entries, outcome.malformed, outcome.vanished) == (1, 1, 5)
    assert "5 entries left the stream before the drain read them" in outcome.describe()
    again = drain(settings, log=lambda line: None)
    assert again.vanished == 0
    engine = sa.create_engine(settings.sqlalchemy_url(reader=True), poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        losses = connection.execute(sa.text(
            f"select reason, entries, predictions from `{settings.raw_database}`."
            "raw_prediction_log_losses")).all()
    engine.dispose()
    assert sorted(losses) == [("malformed", 1, None), ("vanished", 5, None)]


def test_a_stream_id_pushed_to_the_end_is_counted_not_silent(stack_settings, clean, caplog):
    """Residual: the API role can XADD the last possible id, after which no
    entry can be appended until the admin deletes the stream. Every
    prediction answered meanwhile is counted as dropped, and the log says why."""
    attacker = role_client(stack_settings, "api")
    try:
        attacker.xadd(STREAM, {"k": "v"}, id="18446744073709551615-18446744073709551615")
    finally:
        attacker.close()
    dropped = []
    log = PredictionLog(db_url(stack_settings.for_api().redis_url, run_db(stack_settings)),
                        max_bytes=1 << 30, on_dropped=dropped.append)
    with caplog.at_level(logging.WARNING, logger="serve.prediction_log"):
        log.record("/predict", "victim", "global_from_regional", "1", [{}], [1.0], [[]])
        log.flush(timeout=10)
    assert dropped == [1]
    assert "exhausted" in caplog.text or "smaller" in caplog.text


# -- attacks with the drain's password -----------------------------------------------------


def test_drain_can_only_read_acknowledge_and_delete(stack_settings, clean):
    stream.append(clean, [(entry("victim"), 1)], max_bytes=1 << 30)
    attacker = role_client(stack_settings, "drain", socket_timeout=5)
    try:
        for command in (("SET", STREAM, "x"), ("GETSET", STREAM, "x"), ("INCRBY", STREAM, "1"),
                        ("EVAL", BUSY_LOOP, "0"), ("FUNCTION", "LOAD", BUSY_LOOP),
                        ("FCALL", APPEND, "1", STREAM, 1 << 60, 0, 1, "k", "1", "v"),
                        ("XADD", STREAM, "*", "k", "v"), ("XTRIM", STREAM, "MAXLEN", "0"),
                        ("DEL", STREAM), *[("SET", key, 10**15) for key in OLD_COUNTERS]):
            with pytest.raises(redis.exceptions.NoPermissionError):
                attacker.execute_command(*command)
        assert attacker.ping()
    finally:
        attacker.close()
    assert clean.type(STREAM) == b"stream" and clean.xlen(STREAM) == 1


# -- memory: a private redis-server with the stack's limits --------------------------------


def stack_value(name: str) -> str:
    return re.search(rf"^{name}=(\S+)$", STACK_SH, re.M).group(1)


@pytest.fixture
def small_redis(tmp_path):
    """redis-server with the stack's eviction policy and value limit, a
    maxmemory just above what it holds empty, and no functions loaded."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path),
         "--maxmemory-policy", stack_value("REDIS_MAXMEMORY_POLICY"),
         "--proto-max-bulk-len", stack_value("REDIS_MAX_BULK")],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
    client.config_set("maxmemory", client.info("memory")["used_memory"] + 4 * 1024 * 1024)
    yield client
    client.close()
    process.terminate()
    process.wait(timeout=10)


def test_maxmemory_evicts_snapshots_never_the_stream(small_redis):
    """Past maxmemory Redis evicts keys with a TTL (snapshots) and then
    refuses writes; the stream (no TTL) is never evicted."""
    stream.load_functions(small_redis)
    written = 0
    payload = b"s" * 100_000
    for number in range(30):
        small_redis.set(f"{snapshot.KEY_PREFIX}:{number}", payload, ex=3600)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for number in range(10_000):
            written += stream.append(small_redis, [(entry(f"r{number}"), 1)] * 50,
                                     max_bytes=1 << 40)[0]
    assert small_redis.xlen(STREAM) == written > 0
    assert small_redis.dbsize() < 31  # snapshots went first
    assert small_redis.ttl(STREAM) == -1


def test_a_writer_without_the_functions_says_so_and_counts(small_redis, caplog):
    dropped = []
    port = small_redis.connection_pool.connection_kwargs["port"]
    log = PredictionLog(f"redis://127.0.0.1:{port}/0", max_bytes=1 << 30,
                        on_dropped=dropped.append)
    with caplog.at_level(logging.ERROR, logger="serve.prediction_log"):
        for number in range(3):
            log.record("/predict", f"r{number}", "global_from_regional", "1", [{}] * 2,
                       [1.0, 2.0], [[], []])
        log.flush(timeout=10)
    assert sum(dropped) == 6
    assert f"no function {APPEND}" in caplog.text and "stack.sh up" in caplog.text
    assert small_redis.exists(STREAM) == 0


def test_the_stack_limits_hold_the_log_and_the_snapshots(admin):
    config = admin.config_get("maxmemory*")
    assert config["maxmemory-policy"] == stack_value("REDIS_MAXMEMORY_POLICY") == "volatile-lru"
    room = int(config["maxmemory"]) - Settings().prediction_log_max_bytes
    assert room >= 8 * snapshot.MAX_PAYLOAD_BYTES
    assert int(admin.config_get("proto-max-bulk-len")["proto-max-bulk-len"]) \
        == snapshot.MAX_PAYLOAD_BYTES


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
    # Without its own password, the API logs in as nobody rather than as REDIS_URL's admin.
    bare = dataclasses.replace(stack_settings, redis_api_password="").for_api()
    assert "@" not in bare.redis_url and secrets["REDIS_PASSWORD"] not in bare.redis_url
