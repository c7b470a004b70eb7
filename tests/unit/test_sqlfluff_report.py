"""make lint's last words: each violation, the files checked, what was found."""

from __future__ import annotations

import json
import subprocess
import sys

from ml.settings import ROOT


def report(tmp_path, files) -> subprocess.CompletedProcess:
    path = tmp_path / "lint.json"
    path.write_text(json.dumps(files))
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "sqlfluff_report.py"), str(path)],
                          capture_output=True, text=True)


def test_violations_are_listed_and_counted(tmp_path):
    done = report(tmp_path, [
        {"filepath": "models/a.sql", "violations": [
            {"start_line_no": 3, "start_line_pos": 7, "code": "LT01",
             "description": "Too much space."},
            {"start_line_no": 9, "start_line_pos": 1, "code": "CP02", "description": "Case.",
             "warning": True}]},
        {"filepath": "models/b.sql", "violations": []},
    ])
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "models/a.sql:3:7: LT01 Too much space.",
        "[lint] sqlfluff checked 2 SQL file(s) (dbt models and tests): 1 violation(s) in 1 file(s)",
    ]


def test_a_clean_run_says_so(tmp_path):
    done = report(tmp_path, [{"filepath": "models/a.sql", "violations": []}])
    assert done.returncode == 0
    assert done.stdout == ("[lint] sqlfluff checked 1 SQL file(s) (dbt models and tests): "
                           "no violations\n")
