"""The data-quality summary of a dbt build, for reviewers and for programs.

After `dbt build`, every test's outcome is in `run_results.json` and its
definition (severity, tested relation, column, generic test name) in
`manifest.json`; with `store_failures` each failing test also left its rows
in a table of the `<db>_dbt_test__audit` schema. This module turns those into
one `Summary`: how many tests were evaluated, passed, warned, failed or
errored, and for each test how many rows failed and which share of the tested
relation that is.

`summarize()` and the renderers are pure functions of the artifacts (unit
tested on small dicts); only `count_rows()` and `fetch_samples()` touch the
database.

    python -m ml.warehouse.validation_summary [--target-path dbt_project/target]

writes `validation_summary.md` and `validation_summary.json` into the target
folder and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import sqlalchemy as sa

from ml.settings import Settings, load_settings
from ml.warehouse import engine as warehouse

# What a generic test's failure count counts. Row-level tests return the
# failing rows of the tested relation, so a share can be given; the others
# return duplicate values, unexpected values or a single aggregate finding.
ROW_LEVEL_TESTS = frozenset(
    {"not_null", "relationships", "accepted_range", "expression_is_true", "matches_regex"}
)
VALUE_LEVEL_TESTS = frozenset(
    {"unique", "accepted_values", "unique_combination_of_columns", "columns_exist"}
)
STATUS_ORDER = ("error", "fail", "warn", "pass", "skipped")
SAMPLE_ROWS = 5
SAMPLE_COLUMNS = 12


@dataclass(frozen=True)
class TestOutcome:
    """One test of the build."""

    name: str
    unique_id: str
    status: str  # pass | warn | fail | error | skipped
    severity: str  # warn | error
    test_type: str  # generic test name, or "singular"
    tested_node: str | None  # unique_id of the seed/model it checks
    tested_relation: str | None
    column: str | None
    failures: int | None
    unit: str  # rows | values | findings
    rows_tested: int | None
    failing_share: float | None  # failures / rows_tested, row-level tests only
    stored_failures: str | None  # relation holding the failing rows
    message: str | None
    file: str | None

    @property
    def problem(self) -> bool:
        return self.status in ("warn", "fail", "error")


@dataclass(frozen=True)
class Summary:
    """Counts per status and one outcome per test, plus non-test problems."""

    invocation_id: str | None
    generated_at: str | None
    totals: dict[str, int]
    tests: list[TestOutcome]
    node_problems: list[dict] = field(default_factory=list)
    samples: dict[str, list[dict]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No failed or errored test and no model that failed to build."""
        return not (self.totals["failed"] or self.totals["errored"] or self.node_problems)

    @property
    def warnings(self) -> list[str]:
        """One line per warned test, e.g. for a flow's log."""
        return [_headline(test) for test in self.tests if test.status == "warn"]

    @property
    def row_counts(self) -> dict[str, int]:
        """Rows of each tested relation, as counted for the shares."""
        counts = {}
        for test in self.tests:
            if test.tested_relation and test.rows_tested is not None:
                counts[_short(test.tested_relation)] = test.rows_tested
        return dict(sorted(counts.items()))

    @property
    def markdown(self) -> str:
        return to_markdown(self)


def load_artifacts(target_path: Path) -> tuple[dict, dict]:
    """`run_results.json` and `manifest.json` of the last dbt invocation."""
    files = [Path(target_path) / name for name in ("run_results.json", "manifest.json")]
    missing = [str(path) for path in files if not path.exists()]
    if missing:
        raise FileNotFoundError(
            f"dbt artifacts missing: {', '.join(missing)}; run `dbt build` first "
            "(or pass --target-path where it wrote them)."
        )
    run_results, manifest = (json.loads(path.read_text()) for path in files)
    return run_results, manifest


def tested_relations(run_results: Mapping, manifest: Mapping) -> dict[str, str]:
    """unique_id -> relation name of each node that a test of this run checked.

    Only tests that ran count: the manifest also holds nodes the selection
    left out, whose relations may not exist.
    """
    relations = {}
    for result in run_results["results"]:
        node = manifest["nodes"].get(result["unique_id"], {})
        attached = node.get("attached_node") if node.get("resource_type") == "test" else None
        if attached and manifest["nodes"].get(attached, {}).get("relation_name"):
            relations[attached] = manifest["nodes"][attached]["relation_name"]
    return relations


def summarize(
    run_results: Mapping,
    manifest: Mapping,
    row_counts: Mapping[str, int] | None = None,
) -> Summary:
    """Build the summary from dbt's artifacts.

    `row_counts` maps a tested node's unique_id to its row count (see
    `count_rows`); without it shares are left out.
    """
    row_counts = row_counts or {}
    tests, node_problems = [], []
    for result in run_results["results"]:
        node = manifest["nodes"].get(result["unique_id"], {})
        if node.get("resource_type") != "test":
            if result["status"] not in ("success", "pass"):
                node_problems.append(
                    {
                        "unique_id": result["unique_id"],
                        "status": result["status"],
                        "message": result.get("message"),
                    }
                )
            continue
        tests.append(_outcome(result, node, manifest, row_counts))
    tests.sort(key=lambda t: (STATUS_ORDER.index(t.status), t.name))
    statuses = [t.status for t in tests]
    totals = {
        "evaluated": len(tests),
        "passed": statuses.count("pass"),
        "warned": statuses.count("warn"),
        "failed": statuses.count("fail"),
        "errored": statuses.count("error"),
        "skipped": statuses.count("skipped"),
    }
    metadata = run_results.get("metadata", {})
    return Summary(
        invocation_id=metadata.get("invocation_id"),
        generated_at=metadata.get("generated_at"),
        totals=totals,
        tests=tests,
        node_problems=node_problems,
    )


def _outcome(result: Mapping, node: Mapping, manifest: Mapping, row_counts) -> TestOutcome:
    metadata = node.get("test_metadata") or {}
    test_type = metadata.get("name", "singular")
    tested = node.get("attached_node")
    relation = manifest["nodes"].get(tested, {}).get("relation_name") if tested else None
    if test_type in ROW_LEVEL_TESTS:
        unit = "rows"
    elif test_type in VALUE_LEVEL_TESTS:
        unit = "values"
    else:
        unit = "findings"
    failures = result.get("failures")
    rows_tested = row_counts.get(tested) if tested else None
    share = None
    if unit == "rows" and failures is not None and rows_tested:
        share = failures / rows_tested
    return TestOutcome(
        name=node.get("name", result["unique_id"]),
        unique_id=result["unique_id"],
        status=result["status"],
        severity=str(node.get("config", {}).get("severity", "error")).lower(),
        test_type=test_type,
        tested_node=tested,
        tested_relation=relation,
        column=node.get("column_name"),
        failures=failures,
        unit=unit,
        rows_tested=rows_tested,
        failing_share=share,
        stored_failures=result.get("relation_name") or node.get("relation_name"),
        message=result.get("message"),
        file=node.get("original_file_path"),
    )


def to_json(summary: Summary) -> dict:
    """The summary as plain JSON-serialisable data."""
    data = asdict(summary)
    data["ok"] = summary.ok
    return data


def to_markdown(summary: Summary) -> str:
    """A reviewer's page: totals, then every test needing attention, then the rest."""
    totals = summary.totals
    lines = [
        "# Data validation summary",
        "",
        f"dbt invocation `{summary.invocation_id}` at {summary.generated_at}.",
        "",
        f"**{totals['evaluated']} tests evaluated: {totals['passed']} passed, "
        f"{totals['warned']} warned, {totals['failed']} failed, "
        f"{totals['errored']} errored, {totals['skipped']} skipped.**",
        "",
    ]
    if summary.node_problems:
        lines += ["## Models and seeds that did not build", ""]
        lines += [
            f"- `{problem['unique_id']}`: {problem['status']} ({problem['message']})"
            for problem in summary.node_problems
        ]
        lines.append("")
    problems = [test for test in summary.tests if test.problem]
    lines += ["## Tests needing attention", ""]
    if not problems:
        lines += ["None: every test passed.", ""]
    for test in problems:
        lines += [f"### {test.status.upper()}: `{test.name}`", "", _headline(test), ""]
        if test.stored_failures:
            lines += [f"Failing rows: `` select * from {test.stored_failures} ``", ""]
        sample = summary.samples.get(test.unique_id)
        if sample:
            lines += _table(sample) + [""]
    lines += [
        "## All tests",
        "",
        "| status | severity | test | relation | column | failing | of rows | share |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for test in summary.tests:
        lines.append(
            "| "
            + " | ".join(
                _cell(value)
                for value in (
                    test.status,
                    test.severity,
                    test.name,
                    _short(test.tested_relation) if test.tested_relation else "",
                    test.column or "",
                    "" if test.failures is None else f"{test.failures} {test.unit}",
                    "" if test.rows_tested is None else f"{test.rows_tested:,}",
                    _percent(test.failing_share),
                )
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def _headline(test: TestOutcome) -> str:
    where = _short(test.tested_relation) if test.tested_relation else "several relations"
    if test.column:
        where += f".{test.column}"
    count = "?" if test.failures is None else f"{test.failures} {test.unit}"
    share = ""
    if test.failing_share is not None:
        share = f" ({_percent(test.failing_share)} of {test.rows_tested:,})"
    return f"`{test.name}` on {where}: {count} failing{share}, severity {test.severity}."


def _percent(share: float | None) -> str:
    return "" if share is None else f"{share:.3%}"


def _short(relation: str) -> str:
    return relation.replace("`", "").replace('"', "")


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(rows: list[dict]) -> list[str]:
    columns = list(rows[0])[:SAMPLE_COLUMNS]
    shown = f" (first {len(columns)} columns)" if len(rows[0]) > len(columns) else ""
    lines = [f"First {len(rows)} stored rows{shown}:", ""]
    lines += ["| " + " | ".join(_cell(c) for c in columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in rows]
    return lines


def count_rows(relations: Mapping[str, str], settings: Settings) -> dict[str, int]:
    """Row count of each relation (unique_id -> rendered relation name)."""
    counts = {}
    with warehouse.connect(settings, reader=False) as connection:
        for unique_id, relation in relations.items():
            counts[unique_id] = connection.execute(
                sa.text(f"select count(*) from {relation}")
            ).scalar_one()
    return counts


def fetch_samples(
    tests: Iterable[TestOutcome], settings: Settings, limit: int = SAMPLE_ROWS
) -> dict[str, list[dict]]:
    """The first stored failing rows of each warned or failed test."""
    samples = {}
    with warehouse.connect(settings, reader=False) as connection:
        for test in tests:
            if not (test.problem and test.stored_failures):
                continue
            rows = connection.execute(
                sa.text(f"select * from {test.stored_failures} limit {int(limit)}")
            ).mappings()
            samples[test.unique_id] = [
                {key: _plain(value) for key, value in row.items()} for row in rows
            ]
    return samples


def _plain(value: object) -> object:
    """JSON-friendly cell values (decimals as floats, bytes as text)."""
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def build_summary(target_path: Path, settings: Settings | None) -> Summary:
    """Summary of the build whose artifacts are in `target_path`.

    With `settings`, shares and failing-row samples come from the database;
    without, only the counts in the artifacts are used.
    """
    run_results, manifest = load_artifacts(target_path)
    if settings is None:
        return summarize(run_results, manifest)
    row_counts = count_rows(tested_relations(run_results, manifest), settings)
    summary = summarize(run_results, manifest, row_counts)
    return replace(summary, samples=fetch_samples(summary.tests, settings))


def write_summary(summary: Summary, target_path: Path) -> tuple[Path, Path]:
    """Write validation_summary.md and .json into `target_path`."""
    markdown = Path(target_path) / "validation_summary.md"
    data = Path(target_path) / "validation_summary.json"
    markdown.write_text(to_markdown(summary))
    data.write_text(json.dumps(to_json(summary), indent=2, default=str) + "\n")
    return markdown, data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    settings = load_settings()
    parser.add_argument(
        "--target-path",
        type=Path,
        default=settings.dbt_project_dir / "target",
        help="where dbt wrote run_results.json and manifest.json",
    )
    parser.add_argument(
        "--no-db",
        action="store_true",
        help="use the artifacts only (no row counts, shares or samples)",
    )
    args = parser.parse_args(argv)
    summary = build_summary(args.target_path, None if args.no_db else settings)
    write_summary(summary, args.target_path)
    print(to_markdown(summary), end="")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
