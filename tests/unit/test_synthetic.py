"""The synthetic vgsales generator: shape, determinism, realism, dirty rows.

Dirty rows are classified here by an independent reading of the warehouse's
rules (first failing rule wins, duplicates judged among rule-passing rows), so
each kind must appear exactly as often as `dirty_counts` promises.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from ml.data.synthetic import DIRTY_KINDS, HEADER, dirty_counts, write_csv
from ml.settings import ROOT

SEEDS = ROOT / "dbt_project" / "seeds"


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        assert tuple(next(reader)) == HEADER
        rows = list(reader)
    assert all(len(row) == len(HEADER) for row in rows)
    return [dict(zip(HEADER, row)) for row in rows]


def reference_codes(seed_file: str, column: str) -> set[str]:
    with (SEEDS / seed_file).open(encoding="utf-8", newline="") as handle:
        return {row[column] for row in csv.DictReader(handle)}


def classify(rows: list[dict[str, str]]) -> list[str]:
    """Each row's first failing rule, '' when it passes them all."""
    platforms = reference_codes("ref_platforms.csv", "platform_code")
    genres = reference_codes("ref_genres.csv", "genre_name")
    releases: set[tuple[str, str, str]] = set()
    ranks: set[str] = set()
    kinds = []
    for row in rows:
        name, year = row["Name"], row["Year"]
        sales = [float(row[c]) for c in HEADER[6:]]
        if not name.strip():
            kind = "missing_required"
        elif name != name.strip() or any(unicodedata.category(c).startswith("C") for c in name):
            kind = "invalid_name"
        elif year != "N/A" and not (re.fullmatch(r"\d{4}", year) and 1980 <= int(year) <= 2030):
            kind = "invalid_year"
        elif min(sales) < 0:
            kind = "negative_sales"
        elif abs(sales[4] - sum(sales[:4])) > 0.025:
            kind = "sales_sum_inconsistent"
        elif row["Platform"] not in platforms:
            kind = "unknown_platform"
        elif row["Genre"] not in genres:
            kind = "unknown_genre"
        elif (name, row["Platform"], year) in releases:
            kind = "duplicate_release"
        elif row["Rank"] in ranks:
            kind = "duplicate_rank"
        else:
            kind = ""
        if kind in ("", "duplicate_release", "duplicate_rank"):
            releases.add((name, row["Platform"], year))
            ranks.add(row["Rank"])
        kinds.append(kind)
    return kinds


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("synthetic") / "v.csv", 20_000, seed=11)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    first = write_csv(tmp_path / "a.csv", 2_000, seed=3).read_bytes()
    again = write_csv(tmp_path / "b.csv", 2_000, seed=3).read_bytes()
    other = write_csv(tmp_path / "c.csv", 2_000, seed=4).read_bytes()
    assert first == again
    assert first != other


def test_header_row_count_and_ranks(sample):
    rows = read_rows(sample)
    assert len(rows) == 20_000
    ranks = [int(row["Rank"]) for row in rows]
    assert ranks == sorted(ranks)
    assert ranks[0] == 1


def test_each_dirty_kind_appears_as_promised(sample):
    kinds = Counter(classify(read_rows(sample)))
    expected = dirty_counts(20_000)
    assert set(expected) == set(DIRTY_KINDS)
    assert all(count >= 1 for count in expected.values())
    assert {kind: kinds[kind] for kind in DIRTY_KINDS} == expected
    assert kinds[""] == 20_000 - sum(expected.values())


@pytest.mark.parametrize("share", [0.0, 0.05])
def test_dirty_share_is_honoured(tmp_path, share):
    rows = read_rows(write_csv(tmp_path / "v.csv", 3_000, seed=2, dirty_share=share))
    dirty = sum(1 for kind in classify(rows) if kind)
    assert dirty == round(3_000 * share)


def test_clean_rows_look_like_the_real_file(sample):
    rows = [row for row, kind in zip(read_rows(sample), classify(read_rows(sample))) if not kind]
    years = Counter(row["Year"] for row in rows)
    assert 0.008 < years["N/A"] / len(rows) < 0.03
    assert {int(y) for y in years if y != "N/A"} <= set(range(1980, 2017))
    publishers = Counter(row["Publisher"] for row in rows)
    assert 0.001 < publishers["N/A"] / len(rows) < 0.008
    assert publishers.most_common(1)[0][0] == "Electronic Arts"
    platforms = Counter(row["Platform"] for row in rows)
    assert {p for p, _ in platforms.most_common(2)} == {"DS", "PS2"}
    global_sales = sorted(float(row["Global_Sales"]) for row in rows)
    median = global_sales[len(global_sales) // 2]
    assert 0.1 <= median <= 0.25 and global_sales[-1] > 20 * global_sales[len(rows) * 9 // 10]
    assert all(
        abs(float(row["Global_Sales"]) - sum(float(row[c]) for c in HEADER[6:10])) <= 0.0201
        for row in rows
    )
    assert all(re.fullmatch(r"-?\d+(\.\d?[1-9])?", row["NA_Sales"]) for row in rows)
    names = Counter(row["Name"] for row in rows)
    assert sum(1 for count in names.values() if count > 1) > 0.1 * len(names)
    assert any(not name.isascii() for name in names)
    assert any(re.search(r" [2-9]\b", name) for name in names)  # sequels


def test_cli_writes_the_same_file(tmp_path):
    out = tmp_path / "cli.csv"
    subprocess.run(
        [sys.executable, "-m", "ml.data.synthetic", "--rows", "500", "--seed", "9", "--out", str(out)],
        check=True,
        cwd=ROOT,
    )
    assert out.read_bytes() == write_csv(tmp_path / "api.csv", 500, seed=9).read_bytes()


def test_rejects_impossible_requests(tmp_path):
    with pytest.raises(ValueError, match="n_rows"):
        write_csv(tmp_path / "v.csv", -1)
    with pytest.raises(ValueError, match="too few clean rows"):
        write_csv(tmp_path / "v.csv", 100, dirty_share=0.95)
