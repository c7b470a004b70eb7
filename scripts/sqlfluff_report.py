"""Say what `sqlfluff lint --format json` found: each violation, then how many
files were checked and how many broke a rule. Exit 1 if any did.

Usage: python scripts/sqlfluff_report.py REPORT.json  (make lint runs it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(report: str) -> int:
    files = json.loads(Path(report).read_text())
    broken = found = 0
    for entry in files:
        violations = [v for v in entry.get("violations", []) if not v.get("warning")]
        broken += bool(violations)
        found += len(violations)
        for v in violations:
            print(f"{entry['filepath']}:{v.get('start_line_no', '?')}:{v.get('start_line_pos', '?')}: "
                  f"{v.get('code', '?')} {v.get('description', '')}")
    verdict = "no violations" if not found else f"{found} violation(s) in {broken} file(s)"
    print(f"[lint] sqlfluff checked {len(files)} SQL file(s) (dbt models and tests): {verdict}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
