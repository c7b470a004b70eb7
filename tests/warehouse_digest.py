"""A digest of what `dbt build` makes of the real file: every relation's rows
and every node's result, so that work on how the warehouse is built (indexes,
materialisations, rewritten SQL) can prove it changed nothing it makes.

    scripts/with-env python -m tests.warehouse_digest --write

rebuilds the real file into a scratch database and rewrites
tests/data/warehouse_digest.json; do that only for a change that means to
alter the warehouse's content or its tests (a new column, a new test), and
say so in the commit. tests/integration/test_warehouse_digest.py compares.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import tempfile
from datetime import date
from pathlib import Path

import pymysql

from ml.settings import ROOT, Settings, load_settings
from ml.warehouse.dbt_runner import DbtResult, run_dbt

DIGEST_FILE = ROOT / "tests" / "data" / "warehouse_digest.json"
REAL_CSV = ROOT.parent / "shared" / "data" / "vgsales.csv"
# Values of the run, not of the data: which dbt invocation loaded the file,
# when, from which path into which database, how long it took.
VOLATILE_COLUMNS = {
    "load_id", "loaded_at", "invocation_id", "load_seconds", "file_path", "relation_name"}
# Layers dbt builds (a MariaDB schema is a database), relative to the target.
SCHEMA_SUFFIXES = ("", "_raw", "_staging", "_intermediate", "_dbt_test__audit")
# The one relation whose content depends on the date: years up to this one.
YEAR_SPAN = "<db>.dim_year"


def build(settings: Settings, target: Path, log=lambda line: None) -> DbtResult:
    """The pipeline's `dbt build` into `settings`' database, from scratch."""
    drop(settings)
    return run_dbt(["build", "--no-use-colors"], settings, log=log, target_path=target)


def drop(settings: Settings) -> None:
    """Drop every database a build into `settings` makes."""
    connection = _connect(settings)
    with connection, connection.cursor() as cursor:
        for suffix in SCHEMA_SUFFIXES:
            cursor.execute(f"drop database if exists `{settings.mariadb_database}{suffix}`")


def digest(settings: Settings, result: DbtResult) -> dict:
    """{"relations": {schema.name: {rows, sha256}}, "results": {node: [status, failures]}}."""
    relations = {}
    connection = _connect(settings)
    with connection, connection.cursor() as cursor:
        for suffix in SCHEMA_SUFFIXES:
            schema = f"{settings.mariadb_database}{suffix}"
            cursor.execute(
                "select table_name from information_schema.tables where table_schema = %s",
                (schema,))
            for (name,) in sorted(cursor.fetchall()):
                relations[f"<db>{suffix}.{name}"] = _relation_digest(cursor, schema, name)
    results = {
        node["unique_id"]: [node["status"], node.get("failures")]
        for node in sorted(result.results, key=lambda node: node["unique_id"])
    }
    return {"relations": relations, "results": results, "built_in_year": date.today().year}


def _relation_digest(cursor, schema: str, name: str) -> dict:
    cursor.execute(
        "select column_name from information_schema.columns"
        " where table_schema = %s and table_name = %s order by column_name",
        (schema, name))
    columns = [c for (c,) in cursor.fetchall() if c.lower() not in VOLATILE_COLUMNS]
    if not columns:
        return {"rows": None, "sha256": None}
    selected = ", ".join(f"`{column}`" for column in columns)
    cursor.execute(f"select {selected} from `{schema}`.`{name}`")
    # Order-free: a table's rows are a set to its readers, and the order a
    # view returns them in is not part of what it means.
    lines = sorted(json.dumps([str(v) if v is not None else None for v in row])
                   for row in cursor.fetchall())
    sha = hashlib.sha256("\n".join([",".join(columns), *lines]).encode()).hexdigest()
    return {"rows": len(lines), "sha256": sha}


def _connect(settings: Settings) -> pymysql.Connection:
    return pymysql.connect(
        host=settings.mariadb_host, port=settings.mariadb_port, user=settings.mariadb_user,
        password=settings.mariadb_password.get_secret_value(), charset="utf8mb4", autocommit=True,
    )


def differences(expected: dict, actual: dict) -> list[str]:
    """What differs, one line per relation or node.

    dim_year runs to the current year, so across a new year it is left out.
    """
    lines = []
    skip = set() if expected["built_in_year"] == actual["built_in_year"] else {YEAR_SPAN}
    for part in ("relations", "results"):
        for key in sorted((set(expected[part]) | set(actual[part])) - skip):
            want, got = expected[part].get(key), actual[part].get(key)
            if want != got:
                lines.append(f"{part} {key}: expected {want}, found {got}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite {DIGEST_FILE.name}")
    args = parser.parse_args()
    base = load_settings()
    with tempfile.TemporaryDirectory() as tmp:
        seeds = Path(tmp) / "seeds"
        seeds.mkdir()
        (seeds / "vgsales.csv").write_bytes(REAL_CSV.read_bytes())
        settings = dataclasses.replace(
            base, mariadb_database=f"{base.mariadb_database}_digest",
            vgsales_seeds_dir=str(seeds))
        try:
            result = build(settings, Path(tmp) / "target")
            if not result.ok:
                raise SystemExit(f"dbt build failed: {result.status_counts}")
            found = digest(settings, result)
        finally:
            drop(settings)
    if args.write:
        DIGEST_FILE.parent.mkdir(parents=True, exist_ok=True)
        DIGEST_FILE.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        print(f"wrote {DIGEST_FILE.relative_to(ROOT)}: {len(found['relations'])} relations, "
              f"{len(found['results'])} nodes")
    else:
        expected = json.loads(DIGEST_FILE.read_text())
        print("\n".join(differences(expected, found)) or "no difference")


if __name__ == "__main__":
    main()
