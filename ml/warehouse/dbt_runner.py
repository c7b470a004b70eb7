"""Run the dbt CLI on the warehouse project and read what it reports.

dbt runs as a subprocess (its own process, logging and exit code, exactly as
on the command line) with `dbt_project/` as working directory and the
environment built from `Settings`, so a test or a flow can point it at its
own database. Output lines are streamed to a callback as they come (a build
takes tens of seconds); the result is parsed from `run_results.json`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ml.settings import Settings
from ml.warehouse.locks import build_lock_name, held_lock
from ml.warehouse.seed_stage import stage_raw_seed

# Process basics dbt needs from the caller's environment and that Settings
# does not model (search path for git/ssh-free tools, home for ~/.dbt, locale
# for agate's CSV decoding). Everything dbt configures itself with comes from
# settings.as_env().
PASSTHROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")

# dbt commands that only read the warehouse; every other one holds the
# database's build lock (ml.warehouse.locks) while it runs.
READ_ONLY_COMMANDS = frozenset({"compile", "debug", "deps", "docs", "list", "ls", "parse", "source"})

# run_results statuses, grouped the way people read a build.
_PASSED = {"pass", "success"}


@dataclass(frozen=True)
class DbtResult:
    """What one dbt invocation did."""

    args: tuple[str, ...]
    returncode: int
    target_path: Path
    run_results: dict | None = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def invocation_id(self) -> str | None:
        if self.run_results is None:
            return None
        return self.run_results.get("metadata", {}).get("invocation_id")

    @property
    def results(self) -> list[dict]:
        """One entry per executed node (seed, model, test), as dbt wrote it."""
        return [] if self.run_results is None else list(self.run_results["results"])

    @property
    def status_counts(self) -> Counter:
        return Counter(result["status"] for result in self.results)

    @property
    def passed(self) -> int:
        """Nodes that succeeded: models and seeds built, tests passed."""
        counts = self.status_counts
        return sum(counts[status] for status in _PASSED)

    @property
    def warned(self) -> int:
        return self.status_counts["warn"]

    @property
    def failed(self) -> int:
        """Tests whose failures exceeded their error threshold."""
        return self.status_counts["fail"]

    @property
    def errored(self) -> int:
        """Nodes dbt could not run (SQL error, compile error)."""
        return self.status_counts["error"]

    @property
    def skipped(self) -> int:
        return self.status_counts["skipped"]


def dbt_executable() -> Path:
    """The dbt CLI installed next to the running interpreter (the project venv)."""
    path = Path(sys.executable).parent / "dbt"
    if not path.exists():
        raise FileNotFoundError(
            f"dbt not found at {path}: run from the project venv "
            "(.venv/bin/python) after `make venv`."
        )
    return path


def dbt_environment(settings: Settings) -> dict[str, str]:
    """Environment for the dbt process: the settings plus process basics.

    Stages the raw file inside the project first: dbt reads only that copy.
    """
    stage_raw_seed(settings)
    env = {name: os.environ[name] for name in PASSTHROUGH if name in os.environ}
    env.update(settings.as_env())
    return env


# A node's line: "12:00:00  206 of 216 PASS not_null_... [PASS in 0.56s]".
_NODE_LINE = re.compile(r"^\S+\s+(\d+) of (\d+) (\S+)")
_SAID_AS_IS = ("Found ", "Finished running", "Done. PASS=", "Completed with", "Encountered an error")
_TROUBLE = re.compile(r"\b(WARN|FAIL|ERROR|SKIP)\b|Error in |Warning in |Failure in ")
# run_dbt's own lines while another flow holds the warehouse's build lock
# (ml.warehouse.locks): the flow's log must say why it stands still.
_LOCK_LINE = re.compile(r"waiting for lock '|lock '[^']*' taken")


# VGSALES_DBT_OUTPUT=all in the environment: every dbt line reaches the log too.
OUTPUT_ENV = "VGSALES_DBT_OUTPUT"


class ProgressLog:
    """dbt's output for a person at a terminal: every line goes to `path`,
    and `say` hears only what matters: what dbt found, each quarter of the
    nodes done, every warning, failure or error, and the totals (or every
    line, with VGSALES_DBT_OUTPUT=all)."""

    def __init__(self, path: Path, say: Callable[[str], object]) -> None:
        self.path, self.say = Path(path), say
        self.everything = os.environ.get(OUTPUT_ENV) == "all"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", encoding="utf-8")
        self._quarter = 0

    def __call__(self, line: str) -> None:
        self._file.write(line + "\n")
        self._file.flush()
        if self.everything:
            self.say(line)
            return
        text = line.split("  ", 1)[-1].strip()  # without dbt's clock
        node = _NODE_LINE.match(line.strip())
        if node and node.group(3) != "START":
            done, total = int(node.group(1)), int(node.group(2))
            if _TROUBLE.search(node.group(3)):
                self.say(text)
            elif done * 4 // total > self._quarter:
                self._quarter = done * 4 // total
                self.say(f"{done} of {total} nodes done (full output: {self.path})")
        elif not node and (text.startswith(_SAID_AS_IS) or _TROUBLE.search(text)
                           or _LOCK_LINE.search(text)):
            self.say(text)

    def close(self) -> None:
        self._file.close()


@contextmanager
def progress_log(path: Path, say: Callable[[str], object]) -> Iterator[ProgressLog]:
    """A ProgressLog, closed however the run ends."""
    progress = ProgressLog(path, say)
    try:
        yield progress
    finally:
        progress.close()


def run_dbt(
    args: Sequence[str],
    settings: Settings,
    *,
    log: Callable[[str], object] = print,
    target_path: Path | None = None,
) -> DbtResult:
    """Run `dbt <args>` on the warehouse project and return its outcome.

    `target_path` (default `dbt_project/target`) keeps concurrent runs on
    different databases from overwriting each other's artifacts and debug
    logs (`<target_path>/logs/dbt.log`). The caller
    decides what a non-zero exit means; it is never raised here. A command
    that writes waits for any other writing dbt run on the same database
    (a pipeline and a drift check on two workers) and says so in `log`.
    """
    if args and args[0] in READ_ONLY_COMMANDS:
        return _run(args, settings, log=log, target_path=target_path)
    with held_lock(settings, build_lock_name(settings), purpose=f"dbt {args[0]}", log=log):
        return _run(args, settings, log=log, target_path=target_path)


def _run(
    args: Sequence[str],
    settings: Settings,
    *,
    log: Callable[[str], object],
    target_path: Path | None,
) -> DbtResult:
    project_dir = settings.dbt_project_dir
    target = Path(target_path) if target_path else project_dir / "target"
    results_file = target / "run_results.json"
    # A run that dies before writing its results must not be read as the
    # previous run's.
    results_file.unlink(missing_ok=True)
    command = [str(dbt_executable()), *args, "--target-path", str(target)]
    if target_path:
        # dbt's own debug log beside the artifacts: runs on two targets at
        # once (a pipeline and a drift check) would share, and rotate, one.
        command += ["--log-path", str(target / "logs")]
    with subprocess.Popen(
        command,
        cwd=project_dir,
        env=dbt_environment(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            log(line.rstrip("\n"))
        returncode = process.wait()
    run_results = json.loads(results_file.read_text()) if results_file.exists() else None
    return DbtResult(
        args=tuple(args),
        returncode=returncode,
        target_path=target,
        run_results=run_results,
    )


def production_state_dir(settings: Settings) -> Path:
    """Where the pipeline keeps the manifest of its last successful build of
    `settings`' database: the `--state` that `make dbt-changed` compares with."""
    return settings.run_dir / "dbt" / f"{settings.mariadb_database}-state"


def keep_production_state(target: Path, settings: Settings) -> Path:
    """Copy the manifest of a successful build in `target` to the production state.

    Copied, not read from the build's target: the next build overwrites its
    target's manifest, and a failed build must not become the state.
    """
    state = production_state_dir(settings)
    state.mkdir(parents=True, exist_ok=True)
    shutil.copy2(target / "manifest.json", state / "manifest.json")
    return state
