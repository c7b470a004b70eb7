"""The ML mart frames the snapshot and training benchmarks measure on.

- `real_mart(settings)`: `ml_release_features` built by dbt from the real
  vgsales.csv (a synthetic file of its size when it is absent), in the
  database `<MARIADB_DATABASE>_bench_mart`. bench_build's 16.6k runs build
  that database too; the mart is rebuilt (seeds and models, no tests) only
  when it is missing or was loaded from another file.
- `resampled(frame, rows)`: a 1,000,000-row frame made from it, because
  another 1M dbt build (bench_build's is dropped afterwards) would add
  minutes to `make bench`. Rows are drawn with replacement and their sales
  multiplied by log-normal noise (sigma 0.2, rounded to cents as in the raw
  file; global sales and the log label recomputed from them), so the trees
  do not just meet copies of the same label; categories, years, splits and
  history features keep the real mart's distributions. Deterministic by seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pymysql

from ml.data.synthetic import write_csv
from ml.features import MART_DTYPES
from ml.settings import ROOT, Settings
from ml.warehouse.dbt_runner import run_dbt
from ml.warehouse.identifiers import quoted
from ml.warehouse.mart import read_ml_mart

REAL_ROWS = 16_598
REGIONS = ("na_sales", "eu_sales", "jp_sales", "other_sales")
SHARED_CSV = ROOT.parent / "shared" / "data" / "vgsales.csv"


def real_csv(settings: Settings, folder: Path) -> tuple[Path, str]:
    """The real vgsales.csv when present, else a synthetic file of its size."""
    for candidate in (settings.seeds_dir / "vgsales.csv", SHARED_CSV):
        if candidate.is_file():
            return candidate, "real file"
    return write_csv(folder / "vgsales.csv", REAL_ROWS, seed=0), "synthetic, real file absent"


def mart_settings(base: Settings, csv_path: Path) -> Settings:
    """Settings of the bench mart database, seeded from `csv_path`'s folder."""
    return dataclasses.replace(
        base,
        mariadb_database=f"{base.mariadb_database}_bench_mart",
        vgsales_seeds_dir=str(csv_path.parent),
    )


def last_loaded_sha256(settings: Settings) -> str | None:
    """SHA-256 of the file the bench mart's raw table was last seeded from."""
    connection = pymysql.connect(
        host=settings.mariadb_host, port=settings.mariadb_port,
        user=settings.mariadb_user, password=settings.mariadb_password.get_secret_value(),
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                f"select file_sha256 from {quoted(settings.raw_database, 'seed_load_audit')}"
                " where seed_name = 'vgsales' order by loaded_at desc limit 1"
            )
            row = cursor.fetchone()
    except pymysql.err.ProgrammingError:  # no such database or table yet
        return None
    finally:
        connection.close()
    return row[0] if row else None


def real_mart(base: Settings) -> tuple[pd.DataFrame, str]:
    """`(mart frame, source)` of the real file, building it if needed."""
    with tempfile.TemporaryDirectory(prefix="bench-mart-") as folder:
        csv_path, source = real_csv(base, Path(folder))
        settings = mart_settings(base, csv_path)
        digest = hashlib.sha256(csv_path.read_bytes()).hexdigest()
        if last_loaded_sha256(settings) != digest:
            print(f"[bench] building the mart of {csv_path} into {settings.mariadb_database}",
                  flush=True)
            result = run_dbt(
                ["build", "--no-use-colors", "--exclude", "resource_type:test"],
                settings,
                log=lambda line: None,
                target_path=settings.run_dir / "dbt" / settings.mariadb_database,
            )
            if not result.ok:
                raise RuntimeError(f"dbt build of the bench mart failed: {result.status_counts}")
        return read_ml_mart(settings), source


def resampled(frame: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    """`rows` rows drawn from `frame` with noisy sales (see the module docstring)."""
    rng = np.random.default_rng(seed)
    out = frame.iloc[rng.integers(0, len(frame), rows)].reset_index(drop=True)
    out["release_id"] = out["release_id"].astype(str) + "-" + pd.RangeIndex(rows).astype(str)
    noise = rng.lognormal(0.0, 0.2, (rows, len(REGIONS)))
    regional = np.round(out[list(REGIONS)].to_numpy(dtype="float64") * noise, 2)
    out[list(REGIONS)] = regional
    out["global_sales"] = np.round(regional.sum(axis=1), 2)
    out["log_global_sales"] = np.log1p(out["global_sales"])
    return out.astype(MART_DTYPES)
