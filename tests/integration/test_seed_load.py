"""`dbt seed` through the project's loader (macros/seed/) against dbt's own.

A small hostile CSV (quotes, backslashes, newlines, NUL and control
characters, non-ASCII and 4-byte UTF-8, empty cells, the text 'null', blanks,
a short row, SQL-looking names, a BOM) is seeded into an isolated database
twice: with dbt's default loader (`--vars {seed_loader: stock}`) and with ours
in batches of 4 rows. Both tables must hold exactly the same rows, and the
rows agate's reading rules predict; the load audit must record the file's
SHA-256 and row count.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pymysql
import pytest

from ml.data.synthetic import HEADER as SYNTHETIC_HEADER
from ml.settings import Settings
from ml.warehouse.dbt_runner import dbt_environment
from tests.helpers import connect, isolated_settings

HEADER = ",".join(SYNTHETIC_HEADER)
HOSTILE_ROWS = [
    "1,Wii Sports,Wii,2006,Sports,Nintendo,41.49,29.02,3.77,8.46,82.74",
    '2,"He said ""hi"" to \'them\'",PS2,2001,Action,"O\'Reilly ""Games""",1,0,0,0,1',
    "3,C:\\path\\to\\game \\\\ ends in \\,PC,N/A,Misc,Back\\slash,0.1,0.2,0.3,0.4,1.0",
    '4,"Hey, You\nPikachu!",N64,1998,Simulation,Nintendo,0.83,0.06,0.93,0,1.83',
    "5,Super Robot Taisen α,PS2,2003,Strategy,Banpresto,0,0,0.5,0,0.5",
    "6,Game 🎮 Ünïcödé 日本語,DS,2008,Puzzle,Ｆｕｌｌｗｉｄｔｈ,0.01,0,0,0,0.01",
    "7,,GBA,,Puzzle,,0,0,0,0,0",
    "8,Empty Sales,PS,1999,Racing,Sony,,,,,",
    "9,null,NES,NULL,Platform, Null ,0.01,0,0,0,0.01",
    "10,   ,SNES,1995,Action,\t,0.2,0,0,0,0.2",
    "11,  padded name  ,X360,2010,Shooter, EA ,1.5,0,0,0,1.5",
    '12,"Tab\there\x1aZ\x07bell\x00nul",PSP,2005,Fighting,Ctrl,0.3,0,0,0,0.3',
    "13,100%s Pure %(name)s Fun,Wii,2009,Misc,Pct,0.4,0,0,0,0.4",
    "14,Rounding,PSP,2005,Sports,Sega,0.005,1.004,2.675,0.015,3.699",
    "15,\"Robert'); DROP TABLE raw_vgsales;--\",PC,2011,Strategy,*/ /*,0.02,0,0,0,0.02",
    "16,Literal \\u00e9 and \\n and \\' text,GB,1990,Adventure,X'41',0.05,0,0,0,0.05",
    "17,Short Row,GB,1990",
    "18,Year 2099,XOne,2099,Sports,Future,-0.5,0,0,0,-0.5",
]
NULL_TEXT = ("", "null")  # agate's null values for text columns, after strip().lower()
TEXT_COLUMNS = 6


def expected_rows(path: Path) -> list[tuple]:
    """The rows agate's rules predict: text verbatim, blanks and 'null' as NULL."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        records = list(csv.reader(handle))[1:]
    rows = []
    for record in records:
        cells = [None if c.strip().lower() in NULL_TEXT else c for c in record]
        cells += [None] * (11 - len(cells))
        rank = int(cells[0])
        numbers = [
            None if c is None else Decimal(c).quantize(Decimal("0.01"), ROUND_HALF_UP)
            for c in cells[TEXT_COLUMNS:]
        ]
        rows.append((rank, *cells[1:TEXT_COLUMNS], *numbers))
    return rows


def sort_key(row: tuple) -> tuple:
    return tuple((value is None, str(value)) for value in row)


def seed(settings: Settings, target: Path, **dbt_vars) -> None:
    """`dbt seed --full-refresh` of the vgsales seed alone; fails the test on error."""
    env = {**os.environ, **dbt_environment(settings)}
    args = [sys.executable, "-m", "dbt.cli.main", "seed", "--full-refresh"]
    args += ["--select", "vgsales.vgsales"]
    args += ["--target-path", str(target), "--vars", json.dumps(dbt_vars)]
    result = subprocess.run(
        args, cwd=settings.dbt_project_dir, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.fixture(scope="module")
def loads(stack_settings, tmp_path_factory):
    """Seed the hostile file with both loaders; return the tables and audit rows."""
    home = tmp_path_factory.mktemp("seedload")
    seeds = home / "seeds"
    seeds.mkdir()
    csv_path = seeds / "vgsales.csv"
    csv_path.write_text("\ufeff" + "\n".join([HEADER, *HOSTILE_ROWS]) + "\n", encoding="utf-8")
    settings = dataclasses.replace(
        isolated_settings(stack_settings, "seedload", redis_db=14, home=home),
        vgsales_seeds_dir=str(seeds),
    )
    connection = connect(settings)
    with connection.cursor() as cursor:
        cursor.execute(f"drop database if exists `{settings.raw_database}`")
    tables = {}
    for loader, dbt_vars in (("stock", {"seed_loader": "stock"}), ("ours", {"seed_batch_rows": 4})):
        seed(settings, home / f"target-{loader}", **dbt_vars)
        with connection.cursor() as cursor:
            cursor.execute(f"select * from `{settings.raw_database}`.raw_vgsales")
            tables[loader] = list(cursor.fetchall())
    with connection.cursor(pymysql.cursors.DictCursor) as cursor:
        cursor.execute(
            f"select * from `{settings.raw_database}`.seed_load_audit order by loaded_at"
        )
        audit = cursor.fetchall()
    connection.close()
    return {"csv": csv_path, "tables": tables, "audit": audit}


def test_our_loader_stores_exactly_what_the_stock_loader_stores(loads):
    stock, ours = loads["tables"]["stock"], loads["tables"]["ours"]
    assert len(ours) == len(HOSTILE_ROWS)
    assert sorted(ours, key=sort_key) == sorted(stock, key=sort_key)


def test_values_are_agates_reading_of_the_file(loads):
    ours = {row[0]: row for row in loads["tables"]["ours"]}
    assert sorted(ours.values(), key=sort_key) == sorted(expected_rows(loads["csv"]), key=sort_key)
    assert ours[3][1] == "C:\\path\\to\\game \\\\ ends in \\"
    assert ours[4][1] == "Hey, You\nPikachu!"
    assert ours[6][1] == "Game 🎮 Ünïcödé 日本語"
    assert ours[9][1:6:2] == (None, None, None)  # 'null', 'NULL', ' Null '
    assert ours[11][1] == "  padded name  "
    assert ours[12][1] == "Tab\there\x1aZ\x07bell\x00nul"
    assert ours[17][4:] == (None,) * 7


def test_row_count_and_file_hash_are_recorded(loads):
    stock, ours = loads["audit"]
    digest = hashlib.sha256(loads["csv"].read_bytes()).hexdigest()
    assert (stock["loader"], ours["loader"]) == ("stock", "json_table")
    for row in (stock, ours):
        assert row["seed_name"] == "vgsales"
        assert row["file_sha256"] == digest
        assert row["file_rows"] == row["loaded_rows"] == len(HOSTILE_ROWS)
        assert Path(row["file_path"]).resolve() == loads["csv"].resolve()
