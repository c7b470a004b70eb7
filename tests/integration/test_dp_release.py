"""DP release over a real warehouse's marts: the command line, end to end (the
rules without a service are tests/unit/test_dp_release.py)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pandas as pd
import pytest

from ml.reporting import dp_release
from ml.settings import ROOT


@pytest.mark.slow
def test_cli_releases_the_marts_of_a_real_warehouse(marts_settings, tmp_path):
    out = tmp_path / "dp"
    env = {**os.environ, **marts_settings.as_env()}
    done = subprocess.run(
        [sys.executable, "-m", "ml.reporting.dp_release", "--epsilon", "1.0", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = pd.read_csv(out / f"{dp_release.TABLE_NAME}.csv", dtype={"decade": str})
    meta = json.loads((out / f"{dp_release.TABLE_NAME}.json").read_text())
    domain = dp_release.public_domain(marts_settings)
    assert len(table) == meta["domain"]["cells"] == len(domain)
    assert meta["epsilon_total"] == pytest.approx(1.0) and meta["seed"] is None
    exact = dp_release.exact_aggregates(
        dp_release.read_release_rows(marts_settings), domain, dp_release.DEFAULT_SALES_CLAMP
    )
    merged = table.merge(exact, on=dp_release.CELL_COLUMNS, suffixes=("", "_exact"))
    assert len(merged) == len(table)
    assert exact["release_count"].sum() > 1000
    for column in ("release_count", "global_sales"):
        noise = merged[column] - merged[f"{column}_exact"]
        assert (noise != 0).all(), column
        # Summed over every cell the noise stays within five standard deviations.
        bound = 5 * meta["queries"][column]["noise_std"] * math.sqrt(len(table))
        assert abs(noise.sum()) < bound, (column, noise.sum(), bound)
