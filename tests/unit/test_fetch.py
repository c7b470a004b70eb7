"""`make data` (`ml.data.fetch`) on files the user placed: a newer file in the
seeds folder is checked and used as it is, never replaced, and VGSALES_CSV is
used or the run says why not."""

from __future__ import annotations

import dataclasses

import pytest

from ml.data import fetch
from ml.data.refresh import write_refresh
from ml.data.synthetic import write_csv
from ml.settings import Settings


@pytest.fixture
def base(tmp_path):
    return write_csv(tmp_path / "base.csv", 300, seed=4, dirty_share=0)


def settings_for(seeds, csv=""):
    return dataclasses.replace(Settings(), vgsales_seeds_dir=str(seeds), vgsales_csv=str(csv))


def test_a_newer_file_in_seeds_is_used_as_it_is(base, tmp_path, capsys):
    seeds = tmp_path / "seeds"
    write_refresh(base, seeds / "vgsales.csv", seed=1)
    placed = (seeds / "vgsales.csv").read_bytes()
    path = fetch.ensure_raw_csv(settings_for(seeds, csv=base), allow_download=False)
    said = capsys.readouterr().err
    assert path == seeds / "vgsales.csv" and path.read_bytes() == placed
    assert "not the Kaggle file" in said and "a data refresh" in said
    assert f"VGSALES_CSV={base} not used" in said and "never replaced" in said
    assert sorted(p.name for p in seeds.iterdir()) == ["vgsales.csv"]


def test_a_malformed_file_in_seeds_is_refused_and_kept(tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    placed = b"Rank,Name\n1,Tetris\n"
    (seeds / "vgsales.csv").write_bytes(placed)
    with pytest.raises(fetch.RawDataError, match="line 1: the header"):
        fetch.ensure_raw_csv(settings_for(seeds), allow_download=False)
    assert (seeds / "vgsales.csv").read_bytes() == placed


def test_vgsales_csv_that_is_not_the_kaggle_file_is_refused(base, tmp_path):
    seeds = tmp_path / "seeds"
    with pytest.raises(fetch.RawDataError, match="checksum mismatch"):
        fetch.ensure_raw_csv(settings_for(seeds, csv=base), allow_download=False)
    assert not (seeds / "vgsales.csv").exists()
    assert list(seeds.glob("*.part")) == []


def test_the_copy_never_replaces_a_file_placed_meanwhile(base, tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "EXPECTED_SHA256", fetch.sha256_of(base))
    dest = tmp_path / "seeds" / "vgsales.csv"
    dest.parent.mkdir()
    dest.write_text("the user's\n")
    with pytest.raises(fetch.RawDataError, match="left as it is"):
        fetch.atomic_copy(base, dest)
    assert dest.read_text() == "the user's\n"
    assert [p.name for p in dest.parent.iterdir()] == ["vgsales.csv"]
    # With the folder empty, the verified file is copied and called the Kaggle file.
    dest.unlink()
    fetch.atomic_copy(base, dest)
    assert dest.read_bytes() == base.read_bytes()
    assert "the Kaggle file (300 rows" in fetch.describe_raw(dest)


def test_the_refresh_tool_says_what_it_wrote_and_never_writes_over_a_file(tmp_path):
    import subprocess
    import sys

    from ml.data.synthetic import write_csv
    from ml.settings import ROOT

    base = write_csv(tmp_path / "base.csv", 400, seed=3)
    out = tmp_path / "new.csv"
    command = [sys.executable, "-m", "ml.data.refresh", "--base", str(base), "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"[refresh] wrote {out}:\n  400 rows of the base file, ")
    assert "rows added (new years: " in done.stdout and "RefreshSummary(" not in done.stdout
    written = out.read_bytes()
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 1 and "exists; name a new file" in again.stderr
    assert out.read_bytes() == written
