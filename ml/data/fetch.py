"""Put the raw Kaggle file in place for `dbt seed` (`make data`).

Sources, in order: `$VGSALES_CSV`; `../shared/data/vgsales.csv` beside the
checkout; a download from a public mirror. Every source is verified by SHA-256
before it is copied, and the copy is atomic (temp file + rename), so a failed
or interrupted run never leaves a partial `seeds/vgsales.csv`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

from ml.settings import ROOT, Settings, load_settings

EXPECTED_SHA256 = "e2076095ffcae2a92dbc6de6ecbd54455ee034bb38da550b2dc385e9265d4ebe"
EXPECTED_BYTES = 1_355_781
EXPECTED_ROWS = 16_598
SHARED_COPY = ROOT.parent / "shared" / "data" / "vgsales.csv"
# A commit-pinned public copy of the Kaggle file; the checksum is what we trust.
MIRROR_URL = (
    "https://gist.githubusercontent.com/Ironraptor3/34f3938c703111353ee5f28cc9b29d68/"
    "raw/5c57e51dbc550a141a44f93028104ffce6281624/vgsales.csv"
)
WHERE_TO_GET = (
    "Download it from Kaggle (dataset gregorut/videogamesales) and point "
    "VGSALES_CSV at it, e.g. VGSALES_CSV=~/Downloads/vgsales.csv make data"
)


class RawDataError(RuntimeError):
    """The raw file is missing or is not the canonical vgsales.csv."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path) -> None:
    """Raise `RawDataError` unless `path` is the canonical file."""
    size = path.stat().st_size
    actual = sha256_of(path)
    if actual != EXPECTED_SHA256:
        raise RawDataError(
            f"{path}: checksum mismatch (expected sha256 {EXPECTED_SHA256}, "
            f"{EXPECTED_BYTES:,} bytes; found {actual}, {size:,} bytes). {WHERE_TO_GET}"
        )


def download(url: str, dest: Path, timeout: float = 30.0) -> None:
    print(f"[data] downloading {url}", file=sys.stderr)
    with urllib.request.urlopen(url, timeout=timeout) as response, dest.open("wb") as out:
        shutil.copyfileobj(response, out)


def atomic_copy(src: Path, dest: Path) -> None:
    """Verify `src`, then copy it to `dest` via a temp file and rename."""
    verify(src)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, suffix=".part") as tmp:
        tmp_path = Path(tmp.name)
    try:
        shutil.copyfile(src, tmp_path)
        os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)


def ensure_raw_csv(settings: Settings, *, allow_download: bool = True) -> Path:
    """Return `seeds/vgsales.csv`, copying or downloading it first if needed."""
    dest = settings.seeds_dir / "vgsales.csv"
    if dest.exists() and sha256_of(dest) == EXPECTED_SHA256:
        print(f"[data] {dest} present and verified", file=sys.stderr)
        return dest
    if settings.vgsales_csv:
        source = Path(settings.vgsales_csv).expanduser()
        if not source.is_file():
            raise RawDataError(f"VGSALES_CSV={settings.vgsales_csv}: no such file. {WHERE_TO_GET}")
    else:
        source = SHARED_COPY
    if source.is_file():
        print(f"[data] copying {source} -> {dest}", file=sys.stderr)
        atomic_copy(source, dest)
        return dest
    if not allow_download:
        raise RawDataError(f"vgsales.csv not found (looked in {SHARED_COPY}). {WHERE_TO_GET}")
    with tempfile.TemporaryDirectory() as tmp:
        fetched = Path(tmp) / "vgsales.csv"
        try:
            download(MIRROR_URL, fetched)
        except OSError as exc:
            raise RawDataError(
                f"vgsales.csv not found locally (looked in {SHARED_COPY}) and the "
                f"download from {MIRROR_URL} failed: {exc}. {WHERE_TO_GET}"
            ) from exc
        atomic_copy(fetched, dest)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description="Put the verified raw file in seeds/.")
    parser.add_argument("--no-download", action="store_true", help="only local sources")
    args = parser.parse_args()
    try:
        path = ensure_raw_csv(load_settings(), allow_download=not args.no_download)
    except RawDataError as exc:
        sys.exit(f"[data] error: {exc}")
    print(f"[data] ready: {path} ({EXPECTED_ROWS:,} rows, sha256 {EXPECTED_SHA256[:12]}…)")


if __name__ == "__main__":
    main()
