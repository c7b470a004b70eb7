"""Put the raw file in place for `dbt seed` (`make data`).

A `vgsales.csv` already in the seeds folder (`seeds/`, `VGSALES_SEEDS_DIR` or
`--seeds-dir`) is the user's: a newer or edited file is a supported data
refresh. It is checked for structure (`ml.data.csv_check`), never replaced,
and the run says whether it is the Kaggle file (the canonical SHA-256) or
another one.

Only when the folder holds none is the Kaggle file fetched, from, in order:
`$VGSALES_CSV`; `../shared/data/vgsales.csv` beside the checkout; a download
from a public mirror. Each is verified by SHA-256 before it is copied, and
the copy is atomic and exclusive (temp file, then a hard link that fails if
the name exists), so neither a failed run nor a file placed meanwhile is
ever clobbered. `$VGSALES_CSV` is used or the run says why not.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

from ml.data.csv_check import CsvRefused, check_raw_csv
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
    """Verify `src`, then copy it to `dest`, which must not exist yet."""
    verify(src)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, suffix=".part") as tmp:
        tmp_path = Path(tmp.name)
    try:
        shutil.copyfile(src, tmp_path)
        # A link, not a rename: it fails rather than replace a file put there
        # while we copied.
        os.link(tmp_path, dest)
    except FileExistsError:
        raise RawDataError(f"{dest} appeared while copying; it was left as it is") from None
    finally:
        tmp_path.unlink(missing_ok=True)


def describe_raw(path: Path) -> str:
    """Check `path` as the raw seed (`CsvRefused` if it would load wrongly) and
    say what it is: the Kaggle file, or another vgsales-shaped file."""
    facts = check_raw_csv(path)
    digest = sha256_of(path)
    if digest == EXPECTED_SHA256:
        return f"{path}: the Kaggle file ({facts.rows:,} rows, sha256 {digest[:12]}…)"
    return (
        f"{path}: not the Kaggle file ({facts.rows:,} rows, sha256 {digest[:12]}…, "
        f"the Kaggle file has {EXPECTED_ROWS:,} rows, sha256 {EXPECTED_SHA256[:12]}…); "
        "used as it is, a data refresh"
    )


def ensure_raw_csv(settings: Settings, *, allow_download: bool = True) -> Path:
    """Return `<seeds>/vgsales.csv`: the user's file if there is one (checked,
    never replaced), else the Kaggle file copied or downloaded there."""
    dest = settings.seeds_dir / "vgsales.csv"
    if dest.exists():
        if settings.vgsales_csv:
            print(f"[data] VGSALES_CSV={settings.vgsales_csv} not used: {dest} is "
                  "already there and is never replaced; move it away to use "
                  "VGSALES_CSV", file=sys.stderr)
        try:
            print(f"[data] {describe_raw(dest)}", file=sys.stderr)
        except CsvRefused as refusal:
            raise RawDataError(str(refusal)) from None
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
                f"no vgsales.csv in {dest.parent} nor {SHARED_COPY}, and the "
                f"download from {MIRROR_URL} failed: {exc}. {WHERE_TO_GET}"
            ) from exc
        atomic_copy(fetched, dest)
    return dest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Put the verified raw file in seeds/.")
    parser.add_argument("--no-download", action="store_true", help="only local sources")
    parser.add_argument("--seeds-dir", type=Path,
                        help="folder for vgsales.csv (default: VGSALES_SEEDS_DIR, seeds/)")
    args = parser.parse_args(argv)
    settings = load_settings()
    if args.seeds_dir is not None:
        settings = dataclasses.replace(settings, vgsales_seeds_dir=str(args.seeds_dir.resolve()))
    try:
        path = ensure_raw_csv(settings, allow_download=not args.no_download)
    except RawDataError as exc:
        sys.exit(f"[data] error: {exc}")
    print(f"[data] ready: {path}")


if __name__ == "__main__":
    main()
