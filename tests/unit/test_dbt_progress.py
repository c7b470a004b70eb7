"""dbt's output at a terminal: a line per quarter, every warning and failure,
the totals; all of it in the file."""

from __future__ import annotations

from ml.warehouse.dbt_runner import ProgressLog

STATUS = {3: "WARN 10", 5: "FAIL 2"}
BUILD = [
    "12:00:00  Running with dbt=1.7.20",
    "12:00:01  Found 60 models, 216 data tests, 7 seeds, 2 sources",
    *[line for k in range(1, 9) for line in (
        f"12:00:02  {k} of 8 START test t{k} ..... [RUN]",
        f"12:00:02  {k} of 8 {STATUS.get(k, 'PASS')} t{k} ..... [ok]",
    )],
    "12:00:03  Finished running 8 data tests in 0 hours 0 minutes and 2.00 seconds (2.00s).",
    "12:00:03  Completed with 1 error and 1 warning:",
    "12:00:03  Failure in test t5 (models/x.yml)",
    "12:00:03  Done. PASS=6 WARN=1 ERROR=1 SKIP=0 TOTAL=8",
]


def test_the_terminal_hears_the_quarters_the_trouble_and_the_totals(tmp_path):
    said: list[str] = []
    progress = ProgressLog(tmp_path / "logs" / "dbt.log", said.append)
    for line in BUILD:
        progress(line)
    progress.close()
    assert (tmp_path / "logs" / "dbt.log").read_text().splitlines() == BUILD
    assert said[0] == "Found 60 models, 216 data tests, 7 seeds, 2 sources"
    assert [s for s in said if "nodes done" in s] == [
        f"{k} of 8 nodes done (full output: {tmp_path / 'logs' / 'dbt.log'})" for k in (2, 4, 6, 8)]
    assert "3 of 8 WARN 10 t3 ..... [ok]" in said and "5 of 8 FAIL 2 t5 ..... [ok]" in said
    assert "Failure in test t5 (models/x.yml)" in said
    assert said[-1] == "Done. PASS=6 WARN=1 ERROR=1 SKIP=0 TOTAL=8"
    assert not any("START" in s or "Running with" in s for s in said)
    assert len(said) == 11  # of 22 lines: found, 4 quarters, 2 troubled nodes, 4 closing lines


def test_every_line_reaches_the_log_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("VGSALES_DBT_OUTPUT", "all")
    said: list[str] = []
    progress = ProgressLog(tmp_path / "dbt.log", said.append)
    for line in BUILD:
        progress(line)
    progress.close()
    assert said == BUILD



def test_waiting_for_another_flows_build_lock_is_said(tmp_path):
    """run_dbt's lock lines (ml.warehouse.locks.held_lock) go through the same
    log: a flow standing still behind another flow's build says why."""
    lines = ["dbt build: waiting for lock 'vgsales:dbt:db' (held by MariaDB connection 7)",
             "dbt build: lock 'vgsales:dbt:db' taken"]
    said: list[str] = []
    progress = ProgressLog(tmp_path / "dbt.log", said.append)
    for line in ["12:00:00  Running with dbt=1.7.20", *lines]:
        progress(line)
    progress.close()
    assert said == lines
