"""Put the raw `vgsales.csv` inside the dbt project before dbt reads it.

dbt writes each seed's run SQL to `<target>/run/<project>/<seed path>`. A seed
path that climbs out of the project (`../../somewhere`) makes that write climb
out of the target too, and at the right depth it lands on the source file
itself. So dbt never reads the user's folder: the file is copied
into `dbt_project/staged_seeds/<sha256>/`, a gitignored folder named by the
content, and `dbt_project.yml` builds its seed path from that digest alone.

Content addressing lets concurrent runs on different files (tests, benches)
share the project without seeing each other's data, and runs on the same file
share one copy. The copy is atomic (temp file, checksum, rename), so dbt never
reads a half-written file.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ml.settings import Settings, load_settings

STAGED_DIR_NAME = "staged_seeds"
# Folders of other contents unused for this long are removed: tests and
# benches stage many one-off samples, and a million-row file is ~80 MB.
STALE_SECONDS = 7 * 24 * 3600


class SeedStageError(RuntimeError):
    """The raw file could not be staged unchanged."""


def staged_root(settings: Settings) -> Path:
    return settings.dbt_project_dir / STAGED_DIR_NAME


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def stage_raw_seed(settings: Settings) -> Path | None:
    """Copy `<seeds_dir>/vgsales.csv` to `staged_seeds/<sha256>/` and return it.

    Returns None when the seeds folder holds no `vgsales.csv` (dbt then finds
    no `vgsales` seed and says so). The digest is the one `Settings.as_env()`
    exports as `VGSALES_SEED_SHA256`, which is how dbt finds the folder.
    """
    source = settings.seeds_dir / "vgsales.csv"
    if not source.is_file():
        return None
    digest = settings.seed_sha256()
    folder = staged_root(settings) / digest
    staged = folder / "vgsales.csv"
    if not (staged.is_file() and _sha256(staged) == digest):
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part") as tmp:
            tmp_path = Path(tmp.name)
        try:
            shutil.copyfile(source, tmp_path)
            copied = _sha256(tmp_path)
            if copied != digest:
                raise SeedStageError(
                    f"{source} changed while it was copied (sha256 {digest} before, "
                    f"{copied} after); run again once the file is complete"
                )
            os.replace(tmp_path, staged)
        finally:
            tmp_path.unlink(missing_ok=True)
    os.utime(folder)
    _remove_stale(staged_root(settings), keep=folder)
    return staged


def _remove_stale(root: Path, keep: Path) -> None:
    cutoff = time.time() - STALE_SECONDS
    for folder in root.iterdir():
        if folder != keep and folder.is_dir() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    settings = load_settings()
    try:
        staged = stage_raw_seed(settings)
    except SeedStageError as exc:
        sys.exit(f"[seed] error: {exc}")
    if staged is None:
        print(f"[seed] no vgsales.csv in {settings.seeds_dir}: nothing staged", file=sys.stderr)


if __name__ == "__main__":
    main()
