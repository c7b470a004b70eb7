"""Refuse a raw CSV that `dbt seed` would load wrongly, before dbt touches it.

dbt reads a seed with agate, which is lenient where the warehouse needs it
strict: a file cut off in the middle of a quoted name loads the rest of the
file into that name, a blank line becomes a row of NULLs, a stray quote is
dropped, bytes that are not UTF-8 stop the load with a byte offset and no
line. `check_raw_csv` reads the file the way the seed will and refuses these
with the line and what to do; the pipeline runs it before `dbt build`.

What it accepts is what the seed stores faithfully: a UTF-8 file (a BOM and
CRLF or CR line ends are fine), the header `column_types` in dbt_project.yml
declares for the seed, at least one row, no record with more fields than the
header and no blank line. A record with fewer fields is accepted (the missing
cells are NULL and the warehouse quarantines the row as `missing_required`)
unless it is the last one and the file does not end with a line break: that
is a truncated file.

The seed loader (dbt_project/macros/seed/) checks the header and the row
count itself too, for `dbt seed` run by hand, and replaces the raw table only
once every row is in, so a file refused by either leaves the table as it was.

    python -m ml.data.csv_check seeds/vgsales.csv
"""

from __future__ import annotations

import argparse
import codecs
import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from ml.settings import ROOT

DBT_PROJECT = ROOT / "dbt_project" / "dbt_project.yml"


class CsvRefused(ValueError):
    """The file would not load faithfully; the message says where and why."""


@dataclass(frozen=True)
class CsvFacts:
    """What the check saw in a file it accepts."""

    path: Path
    rows: int
    short_rows: int  # records with fewer fields than the header (quarantined later)
    bom: bool
    line_ending: str  # "LF", "CRLF" or "CR"


def seed_columns(seed: str = "vgsales", project_file: Path = DBT_PROJECT) -> tuple[str, ...]:
    """The columns `dbt_project.yml` declares for `seed` (its `column_types`),
    in order: the header the raw file must have."""
    project = yaml.safe_load(project_file.read_text())
    config = project["seeds"][project["name"]].get(seed) or {}
    columns = config.get("+column_types")
    if not columns:
        raise KeyError(f"{project_file}: seeds.{project['name']}.{seed} has no +column_types")
    return tuple(columns)


def check_raw_csv(path: Path | str, columns: tuple[str, ...] | None = None) -> CsvFacts:
    """Accept `path` as the raw vgsales seed or raise `CsvRefused`.

    `columns` is the expected header (default: the seed's `column_types`).
    """
    path = Path(path)
    expected = columns or seed_columns()
    if not path.is_file():
        raise CsvRefused(f"{path}: no such file; put the raw CSV there (make data)")
    data = path.read_bytes()
    if not data.strip():
        raise CsvRefused(
            f"{path}: the file is empty; expected the header {','.join(expected)} "
            "and at least one row"
        )
    bom = data.startswith(codecs.BOM_UTF8)
    text = _decode(path, data[len(codecs.BOM_UTF8) :] if bom else data)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header = _header(path, reader, expected)
    rows = short = 0
    record: list[str] = header
    # Records may span lines (quoted line breaks): name the line they start on.
    line, end = 1, reader.line_num
    try:
        for record in reader:
            line, end = end + 1, reader.line_num
            if not record:
                raise CsvRefused(
                    f"{path}: line {line} is empty (dbt would load it as a row of "
                    "NULLs); remove the blank line"
                )
            if len(record) > len(header):
                raise CsvRefused(
                    f"{path}: line {line} has {len(record)} fields, the header has "
                    f"{len(header)}; quote values that contain commas"
                )
            rows += 1
            short += len(record) < len(header)
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            raise CsvRefused(
                f"{path}: line {end + 1}: a quoted field is still open at the end of "
                "the file: the file looks truncated; copy it again"
            ) from None
        raise CsvRefused(
            f"{path}: line {end + 1}: malformed quoting ({error}); a field "
            'that contains quotes must be quoted and its quotes doubled ("")'
        ) from None
    if not rows:
        raise CsvRefused(f"{path}: the file has a header but no rows")
    if len(record) < len(header) and not text.endswith(("\n", "\r")):
        raise CsvRefused(
            f"{path}: line {line}, the last, has {len(record)} of {len(header)} fields "
            "and no line break: the file looks truncated; copy it again"
        )
    return CsvFacts(path, rows, short, bom, _line_ending(text))


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        byte = data[error.start : error.start + 1].hex().upper()
        raise CsvRefused(
            f"{path}: line {line}, character {column}: byte 0x{byte} is not UTF-8; "
            "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def _header(path: Path, reader, expected: tuple[str, ...]) -> list[str]:
    try:
        header = next(reader)
    except csv.Error as error:
        raise CsvRefused(f"{path}: line 1: malformed header ({error})") from None
    if tuple(header) != expected:
        missing = [c for c in expected if c not in header]
        unexpected = [c for c in header if c not in expected]
        problems = [f"missing {', '.join(missing)}"] if missing else []
        problems += [f"unexpected {', '.join(unexpected)}"] if unexpected else []
        raise CsvRefused(
            f"{path}: line 1: the header is {','.join(header)}; expected "
            f"{','.join(expected)} ({'; '.join(problems) or 'columns out of order'})"
        )
    return header


def _line_ending(text: str) -> str:
    first = text.find("\n")
    if first == -1:
        return "CR" if "\r" in text else "LF"
    return "CRLF" if first and text[first - 1] == "\r" else "LF"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, help="the raw vgsales CSV")
    args = parser.parse_args(argv)
    try:
        facts = check_raw_csv(args.csv)
    except CsvRefused as refusal:
        print(f"refused: {refusal}", file=sys.stderr)
        return 1
    print(
        f"{facts.path}: {facts.rows:,} rows ({facts.short_rows:,} short), "
        f"{facts.line_ending} line ends{', BOM' if facts.bom else ''}: loads as is"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
