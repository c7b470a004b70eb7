"""The API answers a fixed set of requests exactly as before the restructure.

The golden files (tests/system/golden/) were recorded from the API of commit
ec0ceb7 serving champions trained the way the `server` fixture trains them,
on the same raw file; how to regenerate them is in tests/system/api_golden.py.
Status, content type and body are compared byte for byte; nothing is masked,
since every request carries a fixed request id. The one exception is the
whitespace and a moved file's name in /openapi.json's descriptions
(`api_golden.comparable` says why).
"""

from __future__ import annotations

import pytest

from tests.conftest import REAL_CSV
from tests.system import api_golden

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("which", api_golden.FILES)
def test_answers_equal_the_golden_files(server, raw_csv, which):
    golden = api_golden.load(which)
    assert raw_csv == REAL_CSV and api_golden.csv_digest(raw_csv) == golden["csv_sha256"], (
        f"the goldens were recorded on {REAL_CSV} with SHA-256 {golden['csv_sha256']}; "
        f"this session's raw file is {raw_csv}"
    )
    answers = api_golden.record(server.port, which)
    assert set(answers) == set(golden["responses"])
    different = {
        name: (golden["responses"][name], answer) for name, answer in answers.items()
        if api_golden.comparable(name, answer)
        != api_golden.comparable(name, golden["responses"][name])
    }
    assert not different, different
