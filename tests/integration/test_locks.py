"""Warehouse locks (ml.warehouse.locks) on the stack's MariaDB: a second holder
waits and says who holds the lock, gives up with a clear error, and a holder
killed with SIGKILL releases the lock with its connection."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from ml.warehouse import locks
from ml.warehouse.dbt_runner import run_dbt
from ml.warehouse.locks import LockTimeout, build_lock_name, held_lock, lock_name


@pytest.fixture
def quick_polls(monkeypatch):
    monkeypatch.setattr(locks, "POLL_SECONDS", 1)


def test_a_second_holder_waits_then_times_out_naming_the_holder(stack_settings, quick_polls):
    name = lock_name("test", f"wait-{os.getpid()}")
    said: list[str] = []
    with held_lock(stack_settings, name, purpose="first"):
        with pytest.raises(LockTimeout) as refused:
            with held_lock(stack_settings, name, purpose="second", wait_seconds=2,
                           log=said.append):
                pytest.fail("the second holder got a lock the first still holds")
    assert "still held by MariaDB connection" in str(refused.value)
    assert any("second: waiting for lock" in line for line in said), said
    # Released on exit: a third holder gets it at once.
    with held_lock(stack_settings, name, purpose="third", wait_seconds=0):
        pass


def test_the_waiting_side_gets_the_lock_when_the_holder_lets_go(stack_settings, quick_polls):
    name = lock_name("test", f"handover-{os.getpid()}")
    order: list[str] = []
    taken = threading.Event()

    def first():
        with held_lock(stack_settings, name, purpose="first"):
            taken.set()
            time.sleep(2)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    taken.wait(10)
    said: list[str] = []
    with held_lock(stack_settings, name, purpose="second", wait_seconds=30, log=said.append):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]
    assert said[-1] == f"second: lock {name!r} taken", said


def test_a_holder_killed_with_sigkill_releases_the_lock(stack_settings, quick_polls):
    name = lock_name("test", f"killed-{os.getpid()}")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from ml.settings import load_settings\n"
         "from ml.warehouse.locks import held_lock\n"
         f"with held_lock(load_settings(), {name!r}, purpose='holder'):\n"
         "    print('held', flush=True)\n"
         "    time.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockTimeout):
            with held_lock(stack_settings, name, purpose="check", wait_seconds=1):
                pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        # The server drops the dead client's connection, and its lock with it.
        with held_lock(stack_settings, name, purpose="after the kill", wait_seconds=15):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_long_names_fit_mariadbs_limit_and_stay_distinct():
    first = lock_name("dbt", "x" * 80 + "a")
    second = lock_name("dbt", "x" * 80 + "b")
    assert len(first) <= 64 and len(second) <= 64 and first != second


def test_a_writing_dbt_run_waits_for_the_build_lock_and_a_reading_one_does_not(
    stack_settings, seeds_dir, quick_polls, tmp_path
):
    """Two flows on one database: the second `dbt build` starts only after the
    first lets go, and says that it waits; `dbt ls` reads and never waits."""
    # A raw file to stage (a fresh clone's seeds/ has none): dbt parses with it.
    stack_settings = dataclasses.replace(stack_settings, vgsales_seeds_dir=str(seeds_dir))
    said: list[str] = []
    done = threading.Event()
    with held_lock(stack_settings, build_lock_name(stack_settings), purpose="the other flow"):
        listed = run_dbt(["ls", "--resource-type", "source", "--quiet"], stack_settings,
                         log=lambda line: None, target_path=tmp_path / "ls")
        assert listed.ok

        def build():
            # Selects nothing: the lock, not dbt's work, is under test.
            run_dbt(["run", "--select", "tag:no_such_tag"], stack_settings, log=said.append,
                    target_path=tmp_path / "run")
            done.set()

        thread = threading.Thread(target=build)
        thread.start()
        time.sleep(3)
        assert not done.is_set(), "dbt run started while another flow held the build lock"
        assert any("dbt run: waiting for lock" in line for line in said), said
    thread.join(120)
    assert done.is_set()
    assert f"dbt run: lock {build_lock_name(stack_settings)!r} taken" in said
    # Each target keeps its own dbt debug log: concurrent runs never share one.
    assert all((tmp_path / name / "logs" / "dbt.log").stat().st_size > 0 for name in ("ls", "run"))
