"""What the pipeline says about loads (ml.warehouse.loads, flows.pipeline.summary),
from frames and a `sources.json` shaped as dbt writes them."""

from __future__ import annotations

import json

import pandas as pd

from flows.pipeline.summary import LoadReport, PipelineReport, SnapshotOutcome
from ml.warehouse.loads import LoadHistory, read_freshness

SOURCE = "source.vgsales.seed_loads.seed_load_audit"


def history() -> LoadHistory:
    loads = pd.DataFrame({
        "load_number": [1, 2], "loaded_at": ["2026-01-01 06:00:00", "2026-05-01 06:00:00"],
        "file_sha256": ["a" * 64, "b" * 64], "releases": [16_595, 19_085],
        "added": [16_595, 2_490], "revised": [0, 830], "removed": [0, 0]})
    largest = pd.DataFrame({
        "game_name": ["GoldenEye 007"], "platform_code": ["N64"], "release_year": [1997],
        "previous_global_sales": [8.09], "global_sales": [11.27], "global_sales_change": [3.18]})
    return LoadHistory(loads, largest)


def test_the_latest_load_is_stated_with_its_counts_and_largest_revisions():
    loads = history()
    assert loads.describe_latest() == (
        "Load 2 (file `bbbbbbbbbbbb`, loaded 2026-05-01 06:00:00), against load 1: "
        "2,490 added, 830 revised, 0 removed releases.")
    markdown = loads.to_markdown()
    assert "| 2 | 2026-05-01 06:00:00 | `bbbbbbbbbbbb` | 19,085 | 2,490 | 830 | 0 |" in markdown
    assert "| GoldenEye 007 | N64 | 1997 | 8.09 | 11.27 | +3.18 |" in markdown


def test_no_load_recorded_says_so():
    empty = LoadHistory(history().loads.iloc[:0], history().largest_revisions.iloc[:0])
    assert empty.to_markdown() == "No load of the raw file is recorded in fct_sales_history."


def test_freshness_is_read_from_dbts_sources_json(tmp_path):
    (tmp_path / "sources.json").write_text(json.dumps({"results": [{
        "unique_id": SOURCE, "status": "warn", "max_loaded_at": "2026-01-01T06:00:00+00:00",
        "max_loaded_at_time_ago_in_s": 200 * 86400.0,
        "criteria": {"warn_after": {"count": 130, "period": "day"}}}]}))
    freshness = read_freshness(tmp_path)
    assert freshness.describe() == (
        "warn: the raw file was last loaded at 2026-01-01T06:00:00+00:00 "
        "(200.0 days ago; warns after 130 days).")


def test_the_summary_states_the_load_first_and_lists_the_loads():
    report = PipelineReport(
        flow_run_id="run", snapshot=SnapshotOutcome("f", 10, key="k"), row_counts={"x": 1},
        loads=LoadReport(history().describe_latest(), history().to_markdown(), "pass: fresh."))
    markdown = report.to_markdown()
    assert "Load: Load 2 (file `bbbbbbbbbbbb`" in markdown and "Freshness: pass: fresh." in markdown
    assert markdown.index("Load: ") < markdown.index("## Loads") < markdown.index("## Data quality")
