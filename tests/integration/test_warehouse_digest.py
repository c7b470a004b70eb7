"""Every relation and test result of a build of the real file is what it was.

tests/data/warehouse_digest.json was taken before the build was made faster
(tests/warehouse_digest.py says how, and when to retake it); this builds the
real file into this run's own database and compares, relation by relation
and node by node.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from tests.helpers import isolated_settings
from tests.warehouse_digest import DIGEST_FILE, REAL_CSV, build, differences, digest


@pytest.mark.skipif(not REAL_CSV.exists(), reason="the real vgsales.csv is not present")
def test_a_build_of_the_real_file_matches_the_stored_digest(stack_settings, tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    shutil.copyfile(REAL_CSV, seeds / "vgsales.csv")
    settings = dataclasses.replace(
        isolated_settings(stack_settings, "digest", 1, tmp_path), vgsales_seeds_dir=str(seeds))
    result = build(settings, tmp_path / "target")
    assert result.ok, result.status_counts
    found = digest(settings, result)
    expected = json.loads(DIGEST_FILE.read_text())
    assert len(found["relations"]) > 100 and len(found["results"]) > 100
    assert differences(expected, found) == []
