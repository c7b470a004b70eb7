"""The card's and datasheet's rules on hand-made facts (no services).

The integration test (`tests/integration/test_model_card.py`) checks the same
documents against a real warehouse and registry; these pin the rules: who is
under-represented, the incomplete tail, and which interval segments are named.
"""

from __future__ import annotations

import pandas as pd

from ml.modeling import shapes
from ml.reporting import model_card
from ml.reporting.datasheet import UNKNOWN_YEAR, WarehouseFacts, datasheet
from ml.reporting.document import Bullets, Document, Table


def facts() -> WarehouseFacts:
    counts = {
        # Even split over the four platforms with releases: 100; half is 50.
        "platform": pd.DataFrame(
            {"value": ["PS2", "Wii", "GG", "DC", "NS"], "releases": [200, 151, 1, 48, 0]}
        ),
        "genre": pd.DataFrame({"value": ["Action", "Puzzle"], "releases": [220, 180]}),
        "decade": pd.DataFrame(
            {"value": ["2000", "2010", UNKNOWN_YEAR], "releases": [300, 90, 10]}
        ),
    }
    years = pd.DataFrame(
        {"year": [2008, 2009, 2010, 2011, 2014, 2016], "releases": [90, 120, 80, 60, 5, 2]}
    )
    return WarehouseFacts(
        database="vgsales_unit",
        releases=400,
        global_sales=123.4,
        min_global_sales=0.01,
        rejected=pd.DataFrame({"reason_code": ["invalid_year"], "raw_rows": [3]}),
        counts=counts,
        years=years,
    )


def version(**metrics: float) -> model_card.VersionFacts:
    return model_card.VersionFacts(
        model_name="prerelease",
        version=4,
        run_id="abc",
        aliases=("champion",),
        metrics=metrics,
        tags={},
        segments=None,
        backtest_scores=None,
        coverage=pd.DataFrame(
            {
                "segment": ["platform", "platform", "horizon"],
                "value": ["seen", "unseen", "3"],
                "n": [500, 100, 99],
                "coverage": [0.69, 0.65, 0.10],
                "median_width": [0.5, 0.6, 0.7],
            }
        ),
    )


def test_under_represented_is_below_half_an_even_split():
    warehouse = facts()
    assert list(warehouse.under_represented("platform").value) == ["GG", "DC"]
    assert warehouse.under_represented("genre").empty
    # The unknown year is neither a decade nor counted in the even split.
    assert list(warehouse.representation("decade").value) == ["2010", "2000"]
    assert list(warehouse.under_represented("decade").value) == ["2010"]
    assert warehouse.reference_only_platforms == ["NS"]
    assert warehouse.unknown_year_releases == 10
    assert warehouse.raw_rows == 403


def test_thin_tail_is_the_years_after_the_last_complete_one():
    # 5% of the busiest year's 120 releases is 6: 2011 (60) is the last complete year.
    assert facts().thin_tail == [2014, 2016]
    assert facts().last_year == 2016


def test_datasheet_names_thin_values_and_reference_only_platforms():
    text = datasheet(facts()).to_markdown()
    assert "Under-represented platforms (releases in the warehouse): GG (1), DC (48)." in text
    assert "No genre is under-represented." in text
    assert "without a single release in the data: NS." in text
    assert ("Incomplete last years: 2014, 2016 hold less than 5% of the busiest year's "
            "releases each") in text
    assert "403 raw rows: 400 accepted releases" in text


def test_intervals_name_only_large_segments_below_the_floor():
    part = model_card.intervals_part(version(interval_coverage=0.8, interval_width_median=0.55))
    sentence = next(b for b in part.blocks if isinstance(b, str) and "covered less" in b)
    assert "platform seen (69.0% of 500), platform unseen (65.0% of 100)." in sentence
    assert "horizon" not in sentence


def test_shapes_are_tabled_beside_the_baseline_and_misses_say_by_how_much():
    metrics = {f"backtest_shape_{s}_r2_mean": 0.4 for s in shapes.SHAPES}
    metrics.update({f"baseline_{shapes.BASELINE}_backtest_shape_{s}_r2_mean": 0.25
                    for s in shapes.SHAPES})
    metrics.update(time_test_r2=0.6, backtest_r2_shapes_mean=0.4)
    part = model_card.shapes_part(version(**metrics))
    table = next(b for b in part.blocks if isinstance(b, Table)).frame
    assert list(table["shape"]) == list(shapes.SHAPES)
    lines = next(b for b in part.blocks if isinstance(b, Bullets)).items
    assert "0.400, **missed by 0.050** (goal ≥ 0.450)" in lines[0]
    assert lines[1].endswith("0.400, met (≥ 0.300)")
    assert lines[2].endswith("0.600, met (≥ 0.550)")


def test_missing_figures_say_so():
    card = model_card.model_card(version(), facts()).to_markdown()
    assert "Rolling-origin backtest: not measured for this version." in card
    assert "Scores by request shape: not measured for this version." in card
    assert "Prediction intervals and their coverage: not measured for this version." in card
    assert "Error per segment: not measured for this version." in card
    assert "Held-out metrics: not measured for this version." in card


def test_markdown_of_each_block_kind():
    document = Document("T")
    part = document.part("P")
    part.blocks += [
        "text",
        Bullets(("a", "b")),
        Table(pd.DataFrame({"x": [1], "y": [0.5]}), "cap"),
    ]
    assert document.to_markdown() == (
        "# T\n\n## P\n\ntext\n\n- a\n- b\n\n*cap*\n\n| x | y |\n|---|---|\n| 1 | 0.5000 |\n"
    )


def test_reports_are_written_readable_like_the_html_beside_them(tmp_path):
    from ml.reporting.document import write_text

    path = write_text(tmp_path / "card.md", "# card\n")
    assert path.read_text() == "# card\n"
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["card.md"]
