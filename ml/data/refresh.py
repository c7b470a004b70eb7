"""A data refresh of a vgsales-shaped file, for trying the monitoring loop.

The Kaggle file is a snapshot; its next version would carry later years,
consoles that did not exist yet, publishers never seen, and revised sales of
older games (late sales keep coming in). `write_refresh(base, out, seed)`
writes such a file from a base one, deterministically by seed:

- every base row is kept, and `revised_share` of them (known year) get their
  regional sales raised by 5-40%, at least a cent (global stays their sum);
- `added_share` of the base row count is appended as releases of the
  `added_years` years after the base's last, a quarter of them on
  `new_platform` (a console no reference lists), some by new publishers;
- a few rows carry stray platform codes that the warehouse must still
  quarantine: `P$5` (not a code) and `Xbxo` (too rare to be a platform);
- ranks are recomputed by global sales.

    python -m ml.data.refresh --base seeds/vgsales.csv --out /tmp/refresh/vgsales.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from ml.data.synthetic import HEADER

# Not in ref_platforms (which lists the real platforms launched after the
# data, PS5 among them): the new-platform rule must discover it.
NEW_PLATFORM = "PS6"
# Platforms still selling in the added years, besides the new one.
CURRENT_PLATFORMS = ("PS4", "XOne", "3DS", "PC", "WiiU", "PSV")
NEW_PUBLISHERS = ("Lumen Forge Games", "Quiet Harbor Interactive", "Tidal Lantern Studios")
# Stray codes: one that is no platform code at all, one on too few rows.
INVALID_PLATFORM = "P$5"
RARE_PLATFORM = "Xbxo"
RARE_ROWS = 3
REGIONS = ("NA_Sales", "EU_Sales", "JP_Sales", "Other_Sales")
# The warehouse's first valid year (dbt var min_release_year).
MIN_YEAR = 1980


@dataclass(frozen=True)
class RefreshSummary:
    """What `write_refresh` changed, for checks."""

    base_rows: int
    revised_rows: int
    added_rows: int
    new_platform_rows: int
    stray_rows: int  # rows the warehouse must quarantine as unknown_platform
    added_years: tuple[int, ...]

    def describe(self) -> str:
        """What the refreshed file differs in, as a person reads it."""
        years = ", ".join(str(y) for y in self.added_years) or "none"
        return (f"{self.base_rows:,} rows of the base file, {self.revised_rows:,} of them "
                f"with revised sales; {self.added_rows:,} rows added (new years: {years}), "
                f"{self.new_platform_rows:,} of them on the new platform {NEW_PLATFORM}; "
                f"{self.stray_rows:,} rows with a stray platform code the warehouse quarantines "
                "(unknown_platform).")


def _cents(text: str) -> int:
    return round(float(text) * 100)


def _text(cents: int) -> str:
    whole, fraction = divmod(abs(cents), 100)
    text = f"{whole}.{fraction:02d}".rstrip("0").rstrip(".")
    return f"-{text}" if cents < 0 else text


def _with_sales(row: dict, regional_cents: list[int]) -> dict:
    out = dict(row)
    for column, cents in zip(REGIONS, regional_cents):
        out[column] = _text(cents)
    out["Global_Sales"] = _text(sum(regional_cents))
    return out


def write_refresh(
    base: Path | str,
    out: Path | str,
    seed: int = 0,
    *,
    revised_share: float = 0.05,
    added_share: float = 0.15,
    added_years: int = 3,
    new_platform: str = NEW_PLATFORM,
) -> RefreshSummary:
    """Write the refreshed file to `out` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    with Path(base).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    # Templates: rows with a plausible year and numeric sales (a base file
    # may hold dirty rows with years like 2150).
    this_year = date.today().year
    template_rows = [
        i for i, r in enumerate(rows)
        if r["Year"].isdigit() and MIN_YEAR <= int(r["Year"]) <= this_year
        and all(_is_number(r[c]) for c in (*REGIONS, "Global_Sales"))
    ]  # fmt: skip
    if not template_rows:
        raise ValueError(f"{base}: no row with a plausible Year and numeric sales")
    templates = [rows[i] for i in template_rows]
    first_new_year = max(int(r["Year"]) for r in templates) + 1
    new_years = tuple(range(first_new_year, first_new_year + added_years))
    if new_years[-1] > this_year:
        raise ValueError(
            f"{base}: its last year is {first_new_year - 1}; {added_years} added years "
            f"would reach {new_years[-1]}, after this year ({this_year})"
        )

    refreshed = list(rows)
    revised = rng.choice(template_rows, size=round(len(rows) * revised_share), replace=False)
    for index in revised.tolist():
        factor = rng.uniform(1.05, 1.4)
        before = [_cents(rows[index][c]) for c in REGIONS]
        regional = [round(cents * factor) for cents in before]
        if sum(regional) == sum(before):
            # Small figures round back to themselves: revise by a cent.
            regional[int(np.argmax(before))] += 1
        refreshed[index] = _with_sales(rows[index], regional)

    n_added = round(len(rows) * added_share)
    on_new_platform = rng.random(n_added) < 0.25
    for number in range(n_added):
        template = templates[rng.integers(len(templates))]
        platform = (
            new_platform
            if on_new_platform[number]
            else CURRENT_PLATFORMS[rng.integers(len(CURRENT_PLATFORMS))]
        )
        publisher = (
            NEW_PUBLISHERS[rng.integers(len(NEW_PUBLISHERS))]
            if rng.random() < 0.1
            else template["Publisher"]
        )
        row = dict(
            template,
            Name=f"{template['Name']} Reloaded {number + 1}",
            Platform=platform,
            Year=str(new_years[rng.integers(len(new_years))]),
            Publisher=publisher,
        )
        refreshed.append(_with_sales(row, [_cents(template[c]) for c in REGIONS]))

    strays = [(INVALID_PLATFORM, 2), (RARE_PLATFORM, RARE_ROWS)]
    for code, count in strays:
        for number in range(count):
            template = templates[rng.integers(len(templates))]
            refreshed.append(
                dict(template, Name=f"{template['Name']} Stray {code} {number + 1}",
                     Platform=code, Year=str(new_years[0]))
            )

    order = sorted(
        range(len(refreshed)),
        key=lambda i: (-_cents(refreshed[i]["Global_Sales"])
                       if _is_number(refreshed[i]["Global_Sales"]) else 0, i),
    )  # fmt: skip
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADER, lineterminator="\n")
        writer.writeheader()
        for rank, index in enumerate(order, start=1):
            writer.writerow(dict(refreshed[index], Rank=str(rank)))
    return RefreshSummary(
        base_rows=len(rows),
        revised_rows=len(revised),
        added_rows=n_added,
        new_platform_rows=int(on_new_platform.sum()),
        stray_rows=sum(count for _, count in strays),
        added_years=new_years,
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="vgsales-shaped CSV to refresh")
    parser.add_argument("--out", type=Path, required=True, help="where to write the refreshed CSV")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.out.exists():
        sys.exit(f"[refresh] error: {args.out} exists; name a new file (nothing was written)")
    summary = write_refresh(args.base, args.out, args.seed)
    print(f"[refresh] wrote {args.out}:\n  {summary.describe()}")


if __name__ == "__main__":
    main()
