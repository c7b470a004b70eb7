"""`make dbt-changed`: build and test only what an edit changed.

dbt's state-based selection, the everyday loop of an analytics engineer:
`dbt build --select state:modified+ --defer --state <production manifest>`
builds the models whose SQL, config or yml differs from the last production
build (the manifest the pipeline keeps, `dbt_runner.production_state_dir`)
and everything downstream of them, with their tests. It builds into a
development database (`<database>_dev` by default), so an edit never
replaces a table the API or the report reads; `--defer` points every model
it does not build at the production tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

from ml.settings import Settings, load_settings
from ml.warehouse.dbt_runner import DbtResult, production_state_dir, run_dbt

DEV_SUFFIX = "_dev"


def changed_build_args(state: Path, raw_schema: str) -> list[str]:
    """The dbt arguments: modified nodes and their children, the rest deferred.

    Sources are not deferred by dbt: var `raw_schema` points them at
    production's raw schema, which also keeps them unmodified to `state:`.
    The monitoring models stay out, as in the pipeline's build (selectors.yml):
    the drift flow builds them.
    """
    return ["build", "--select", "state:modified+", "--exclude", "tag:monitoring",
            "--defer", "--state", str(state),
            "--vars", json.dumps({"raw_schema": raw_schema}), "--no-use-colors"]


def build_changed(
    settings: Settings,
    *,
    state: Path | None = None,
    dev_database: str | None = None,
    log: Callable[[str], object] = print,
) -> DbtResult:
    """Build `state:modified+` into `dev_database` against the production `state`.

    `state` defaults to the manifest the pipeline kept for `settings`'
    database; `dev_database` to that database plus `_dev`.
    """
    state = state or production_state_dir(settings)
    if not (state / "manifest.json").is_file():
        raise FileNotFoundError(
            f"no production manifest in {state}: run `make pipeline` once (it keeps the "
            "manifest of its last successful build there), then edit and run this again"
        )
    dev = dataclasses.replace(
        settings, mariadb_database=dev_database or settings.mariadb_database + DEV_SUFFIX)
    log(f"[dbt-changed] building what differs from {state / 'manifest.json'} "
        f"into {dev.mariadb_database}; the rest is read from {settings.mariadb_database}")
    return run_dbt(changed_build_args(state, settings.raw_database), dev, log=log,
                   target_path=settings.run_dir / "dbt" / dev.mariadb_database)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev-database", help="database to build into (default <database>_dev)")
    args = parser.parse_args(argv)
    try:
        result = build_changed(load_settings(), dev_database=args.dev_database)
    except FileNotFoundError as error:
        raise SystemExit(f"[dbt-changed] error: {error}") from None
    built = [r["unique_id"] for r in result.results]
    print(f"[dbt-changed] {len(built)} node(s) ran: {dict(result.status_counts)}")
    raise SystemExit(result.returncode)


if __name__ == "__main__":
    main()
