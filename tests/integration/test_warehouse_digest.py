"""Every relation and test result of a build of the real file is what it was.

tests/data/warehouse_digest.json was taken before the build was made faster
(tests/warehouse_digest.py says how, and when to retake it); this compares
the session's build of the real file (tests/conftest.py `warehouse_build`)
with it, relation by relation and node by node.
"""

from __future__ import annotations

import json

from tests.warehouse_digest import DIGEST_FILE, REAL_CSV, differences


def test_a_build_of_the_real_file_matches_the_stored_digest(real_csv, warehouse_build, raw_csv,
                                                            build_digest):
    # The session's build (tests/conftest.py `warehouse_build`): a full build
    # of the real file from empty databases, as tests.warehouse_digest makes.
    assert raw_csv == real_csv == REAL_CSV  # fails, saying where the file goes, when absent
    assert warehouse_build.result.ok, warehouse_build.result.status_counts
    found = build_digest
    expected = json.loads(DIGEST_FILE.read_text())
    assert len(found["relations"]) > 100 and len(found["results"]) > 100
    assert differences(expected, found) == []
