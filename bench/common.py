"""Helpers shared by the benchmarks: run statistics, markdown tables, JSON results."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from ml.settings import ROOT

RESULTS_DIR = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Stats:
    """Median, min and max of repeated measurements (the runs are kept too)."""

    median: float
    min: float
    max: float
    runs: tuple[float, ...]

    @classmethod
    def of(cls, runs: list[float]) -> Stats:
        if not runs:
            raise ValueError("no runs to summarise")
        return cls(statistics.median(runs), min(runs), max(runs), tuple(runs))

    def scaled(self, factor: float) -> Stats:
        """Every figure times `factor` (an extrapolation from a smaller run)."""
        return Stats(*(v * factor for v in (self.median, self.min, self.max)), self.runs)

    def cell(self, digits: int = 2) -> str:
        """`median (min–max)` for a table cell; a single run shows alone."""
        if len(self.runs) == 1:
            return f"{self.median:.{digits}f}"
        return f"{self.median:.{digits}f} ({self.min:.{digits}f}–{self.max:.{digits}f})"

    def as_dict(self) -> dict:
        return asdict(self)


def free_port() -> int:
    """A loopback port nothing listens on right now (benchmarks and tests)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def machine() -> dict:
    """What the figures were measured on (they depend on it, and on its load)."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_1m": os.getloadavg()[0],
    }


def _jsonable(value: object) -> object:
    return value.as_dict() if isinstance(value, Stats) else str(value)


def write_results(name: str, payload: dict) -> Path:
    """Write `bench/results/<name>.json` (gitignored) and return its path.

    `Stats` anywhere in `payload` are written as dicts, anything else JSON
    cannot hold as text."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    return path


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (`python -m serve`: nginx, the instances'
    gunicorn masters and their workers); none when it is gone."""
    try:
        found = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []
    return found + [d for child in found for d in descendants(child)]


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of `pid` (all its threads) so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
