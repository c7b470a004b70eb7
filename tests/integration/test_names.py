"""Names resolved through the reference seeds: one definition for the
warehouse, the point-in-time history, the API's resolver and the drift checks.

The real seeds are read from the session's build of the real file (shared,
read only). One small build of a generated file, in a database of its own,
shows that a single seed row changes all of them at once: the mart files
the linked publisher's releases under the canonical one, the API's resolver
answers the linked name under it, and the drift models no longer count it
as unseen.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from ml.data.synthetic import write_csv
from ml.modeling import goals
from ml.modeling.names import NameReference, Resolver
from ml.modeling.point_in_time import PointInTime
from ml.warehouse.dbt_runner import run_dbt
from ml.warehouse.mart import read_ml_mart, read_written_names
from tests.helpers import isolated_settings

pytestmark = pytest.mark.slow

SMALL_ROWS = 800
# The tag holding the reference must stay well inside MLflow's 8,000 characters.
TAG_BUDGET = 6000


def known_of(mart, platforms=None) -> dict[str, frozenset[str]]:
    """The categories a model fitted on `mart` knows (and, as the API adds
    them, the platforms of the reference)."""
    known = {c: frozenset(mart[c].astype(str)) for c in ("platform", "genre", "publisher")}
    if platforms is not None:
        known["platform"] |= frozenset(platforms["platform_code"].astype(str))
    return known


def test_the_issue_names_resolve_as_the_data_files_them(built_mart, built_platforms, built_names):
    resolver = Resolver(known_of(built_mart, built_platforms), built_names)
    cases = {
        ("publisher", "Sony Interactive Entertainment"): "Sony Computer Entertainment",
        ("publisher", "Bandai Namco Entertainment"): "Namco Bandai Games",
        ("publisher", "Rockstar Games"): "Take-Two Interactive",
        ("publisher", "2K Sports"): "Take-Two Interactive",
        ("publisher", "Koei Tecmo"): "Tecmo Koei",
        ("publisher", "Xbox Game Studios"): "Microsoft Game Studios",
        ("publisher", "THQ Nordic"): "Nordic Games",
        ("platform", "Switch"): "NS",
        ("platform", "Nintendo Switch"): "NS",
        ("platform", "PlayStation 4"): "PS4",
        ("platform", "Xbox Series X"): "XS",
        ("platform", "Mega Drive"): "GEN",
        ("genre", "Action-Adventure"): "Action",
        ("genre", "Visual Novel"): "Adventure",
        ("genre", "Party"): "Misc",
    }
    for (field, written), canonical in cases.items():
        assert resolver.correct({field: written})[1] == {field: canonical}, written
    fixed, matched, suggestions = resolver.correct({"platform": "PS6"})
    assert fixed == {"platform": "PS6"} and matched == {} and suggestions == {}
    # The lineage beats edit distance: a label's misspelling suggests its group.
    assert resolver.suggest("publisher", "Rockstar Gmaes") == ["Take-Two Interactive"]


def test_the_data_variants_of_one_company_share_its_history(marts_settings, built_mart):
    publishers = set(built_mart["publisher"].astype(str))
    assert {"Sony Computer Entertainment Europe", "989 Studios", "Activision Value"}.isdisjoint(
        publishers)
    # Companies that merged or were acquired keep their own history.
    assert {"SquareSoft", "Enix Corporation", "Square Enix", "Midway Games"} <= publishers
    engine = sa.create_engine(marts_settings.sqlalchemy_url())
    try:
        with engine.connect() as connection:
            filed = dict(connection.execute(sa.text(
                "select publisher_name, canonical_publisher_name from dim_publisher")).all())
            released = dict(connection.execute(sa.text(
                "select canonical_publisher_name, sum(release_count) from dim_publisher "
                "group by canonical_publisher_name")).all())
    finally:
        engine.dispose()
    assert filed["Sony Computer Entertainment Europe"] == "Sony Computer Entertainment"
    assert filed["SquareSoft"] == "SquareSoft"
    mart_counts = built_mart["publisher"].astype(str).value_counts()
    assert mart_counts["Sony Computer Entertainment"] == released["Sony Computer Entertainment"]


def test_point_in_time_history_resolves_a_linked_name(built_mart, built_platforms, built_names):
    history = PointInTime(built_mart, built_platforms, built_names)
    asked = {"genre": "Action", "year": 2017, "name": "Uncharted 5"}
    linked = history.complete({**asked, "publisher": "Sony Interactive Entertainment",
                               "platform": "PlayStation 4"})
    filed = history.complete({**asked, "publisher": "Sony Computer Entertainment",
                              "platform": "PS4"})
    assert linked == filed and filed["publisher_prior_titles"] > 500
    assert linked["publisher"] == "Sony Computer Entertainment" and linked["platform"] == "PS4"


def test_no_linked_name_of_a_top_publisher_is_unseen(built_mart, built_names):
    goal = goals.lineage_goal(known_of(built_mart), built_mart, built_names)
    assert goal.met and goal.value.startswith("0 of "), goal
    top = goals.top_publishers(built_mart)
    assert len(top) == goals.TOP_PUBLISHERS and "Unknown" not in top
    linked = {link.canonical for link in built_names.links("publisher")}
    assert {"Sony Computer Entertainment", "Namco Bandai Games", "Take-Two Interactive"} <= linked


def test_the_reference_fits_its_version_tag(built_names):
    tag = built_names.to_tag()
    assert len(tag) < TAG_BUDGET, f"{len(tag)} characters: store it as a run artifact instead"
    assert NameReference.from_tag(tag).to_json() == built_names.to_json()


@pytest.fixture(scope="module")
def small_warehouse(stack_settings, tmp_path_factory):
    """A generated file built (no tests) into a database of its own, with a
    champion, its training reference and one logged prediction landed."""
    home = tmp_path_factory.mktemp("names")
    seeds = home / "seeds"
    seeds.mkdir()
    write_csv(seeds / "vgsales.csv", n_rows=SMALL_ROWS, seed=5, dirty_share=0.0)
    settings = dataclasses.replace(
        isolated_settings(stack_settings, "names", 0, home), vgsales_seeds_dir=str(seeds))
    built = run_dbt(["build", "--exclude", "resource_type:test"], settings,
                    target_path=home / "target", log=lambda line: None)
    assert built.ok, built.status_counts
    engine = sa.create_engine(settings.sqlalchemy_url())
    raw = f"`{settings.mariadb_database}_raw`"
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with engine.begin() as connection:
        for statement, row in (
            ("insert into {}.raw_model_champions values ('prerelease', 1, :now)", {}),
            ("insert into {}.raw_model_versions values "
             "('prerelease', 1, 'run', 'digest', 'all', 100, :now)", {}),
            ("insert into {}.raw_training_reference values ('prerelease', 1, 'publisher', "
             "'category', 'Nintendo', 'Nintendo', 0, null, null, 100)", {}),
            ("insert into {}.raw_prediction_log values ('names', 0, '1-0', :now, "
             "'/v1/forecast', 'prerelease', 1, '{{\"publisher\": \"THQ\"}}', 1.0, '[]', :now)", {}),
        ):
            connection.execute(sa.text(statement.format(raw)), {"now": now, **row})
    yield settings, engine, raw, home
    engine.dispose()


def _after_names_change(settings, home) -> None:
    """What a rebuild does after a seed changes: every model downstream of the names."""
    ran = run_dbt(["run", "--select", "int_names__written+"], settings,
                  target_path=home / "target", log=lambda line: None)
    assert ran.ok, ran.status_counts


def _logged_thq(engine) -> tuple[str, bool]:
    with engine.connect() as connection:
        value = connection.execute(sa.text(
            "select category_value from int_monitoring__current_values "
            "where drift_source = 'predictions' and feature = 'publisher'")).scalar_one()
        unseen = connection.execute(sa.text(
            "select is_unseen from int_monitoring__current_binned "
            "where drift_source = 'predictions' and feature = 'publisher'")).scalar_one()
    return value, bool(unseen)


def test_one_seed_row_changes_the_warehouse_the_api_and_the_drift_checks(small_warehouse):
    settings, engine, raw, home = small_warehouse
    intermediate = dataclasses.replace(
        settings, mariadb_database=f"{settings.mariadb_database}_intermediate")
    intermediate_engine = sa.create_engine(intermediate.sqlalchemy_url())
    try:
        _after_names_change(settings, home)
        before = read_ml_mart(settings)
        thq = int((before["publisher"].astype(str) == "THQ").sum())
        nintendo = int((before["publisher"].astype(str) == "Nintendo").sum())
        names = NameReference.from_frame(read_written_names(settings))
        assert thq > 0 and names.link("publisher", "THQ") is None
        assert Resolver(known_of(before), names).correct({"publisher": "THQ"})[1] == {}
        assert _logged_thq(intermediate_engine) == ("THQ", True)

        with engine.begin() as connection:
            connection.execute(sa.text(
                f"insert into {raw}.ref_publisher_lineage values "
                "('THQ', 'Nintendo', 'label', null, 'https://example.org/test', 'test link')"))
        _after_names_change(settings, home)

        after = read_ml_mart(settings)
        counts = after["publisher"].astype(str).value_counts()
        assert "THQ" not in counts and counts["Nintendo"] == nintendo + thq
        names = NameReference.from_frame(read_written_names(settings))
        fixed, matched, _ = Resolver(known_of(after), names).correct({"publisher": "THQ"})
        assert matched == {"publisher": "Nintendo"} and fixed == matched
        assert _logged_thq(intermediate_engine) == ("Nintendo", False)
    finally:
        intermediate_engine.dispose()
