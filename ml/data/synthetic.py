"""Synthetic vgsales-shaped CSVs for tests and benchmarks.

`write_csv(path, n_rows, seed)` writes the real file's header and number
formatting with distributions resembling it: platform, genre, publisher and
year mixes, heavy-tailed (log-normal) sales that add up within rounding, N/A
years and publishers, franchises whose entries repeat across platforms and
years, and a few non-ASCII names. The frequency tables below were derived once
from the Kaggle vgsales.csv (16,598 rows); the file itself is never read here.

A share of rows (`dirty_share`) is dirty, spread evenly over `DIRTY_KINDS`,
each dirty row failing exactly one of the warehouse's rules, so a build over
the file must quarantine `dirty_counts(n_rows, dirty_share)` rows per reason.
Output is a function of (n_rows, seed, dirty_share) only.

    python -m ml.data.synthetic --rows 1000000 --seed 0 --out /tmp/vgsales_1m.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

HEADER = (
    "Rank", "Name", "Platform", "Year", "Genre", "Publisher",
    "NA_Sales", "EU_Sales", "JP_Sales", "Other_Sales", "Global_Sales",
)  # fmt: skip

# The warehouse's reason codes (rejected_vgsales.reason_code), one per kind of
# dirty row generated: empty name, control characters in the name, year out of
# range or malformed, a negative regional figure, Global off the regional sum
# by more than rounding, a platform or genre missing from the reference seeds,
# a second copy of a (Name, Platform, Year) release, a Rank given twice.
DIRTY_KINDS = (
    "missing_required",
    "invalid_name",
    "invalid_year",
    "negative_sales",
    "sales_sum_inconsistent",
    "unknown_platform",
    "unknown_genre",
    "duplicate_release",
    "duplicate_rank",
)

# Platform: (rows in the real file, first and last year of its 2nd-98th
# percentile of releases, mean NA/EU/JP/Other share of its sales).
PLATFORMS = {
    "DS": (2163, 2005, 2011, (0.55, 0.12, 0.28, 0.05)),
    "PS2": (2161, 2000, 2010, (0.38, 0.25, 0.26, 0.11)),
    "PS3": (1329, 2006, 2016, (0.37, 0.28, 0.24, 0.11)),
    "Wii": (1325, 2006, 2012, (0.65, 0.19, 0.09, 0.06)),
    "X360": (1265, 2006, 2015, (0.59, 0.27, 0.06, 0.08)),
    "PSP": (1213, 2005, 2013, (0.32, 0.09, 0.54, 0.06)),
    "PS": (1196, 1995, 2001, (0.43, 0.28, 0.23, 0.06)),
    "PC": (960, 1996, 2016, (0.19, 0.71, 0.00, 0.10)),
    "XB": (824, 2001, 2006, (0.76, 0.21, 0.01, 0.02)),
    "GBA": (822, 2001, 2006, (0.65, 0.23, 0.11, 0.01)),
    "GC": (556, 2001, 2006, (0.74, 0.18, 0.07, 0.01)),
    "3DS": (509, 2011, 2016, (0.27, 0.19, 0.51, 0.03)),
    "PSV": (413, 2011, 2016, (0.13, 0.13, 0.67, 0.06)),
    "PS4": (336, 2013, 2016, (0.29, 0.38, 0.21, 0.12)),
    "N64": (319, 1996, 2001, (0.67, 0.17, 0.14, 0.02)),
    "SNES": (239, 1991, 1997, (0.08, 0.02, 0.90, 0.00)),
    "XOne": (213, 2013, 2016, (0.54, 0.38, 0.01, 0.07)),
    "SAT": (173, 1994, 1998, (0.00, 0.00, 0.99, 0.01)),
    "WiiU": (143, 2012, 2016, (0.45, 0.33, 0.17, 0.05)),
    "2600": (133, 1980, 1988, (0.94, 0.05, 0.00, 0.01)),
    "NES": (98, 1983, 1993, (0.33, 0.07, 0.58, 0.02)),
    "GB": (98, 1989, 2001, (0.23, 0.10, 0.65, 0.02)),
    "DC": (52, 1998, 2006, (0.07, 0.02, 0.90, 0.01)),
    "GEN": (27, 1990, 1994, (0.29, 0.08, 0.61, 0.02)),
    "NG": (12, 1993, 1996, (0.00, 0.00, 1.00, 0.00)),
    "SCD": (6, 1993, 1994, (0.11, 0.04, 0.84, 0.01)),
    "WS": (6, 1999, 2001, (0.00, 0.00, 1.00, 0.00)),
    "3DO": (3, 1994, 1995, (0.00, 0.00, 1.00, 0.00)),
    "TG16": (2, 1995, 1995, (0.00, 0.00, 1.00, 0.00)),
    "GG": (1, 1992, 1992, (0.00, 0.00, 1.00, 0.00)),
    "PCFX": (1, 1996, 1996, (0.00, 0.00, 1.00, 0.00)),
}

GENRES = {
    "Action": 3316, "Sports": 2346, "Misc": 1739, "Role-Playing": 1488,
    "Shooter": 1310, "Adventure": 1286, "Racing": 1249, "Platform": 886,
    "Simulation": 867, "Fighting": 848, "Strategy": 681, "Puzzle": 582,
}  # fmt: skip

# The 30 biggest publishers (77% of rows); the rest of the real file's 579
# share TAIL_PUBLISHER_ROWS, spread here over generated studio names.
PUBLISHERS = {
    "Electronic Arts": 1351, "Activision": 975, "Namco Bandai Games": 932,
    "Ubisoft": 921, "Konami Digital Entertainment": 832, "THQ": 715,
    "Nintendo": 703, "Sony Computer Entertainment": 683, "Sega": 639,
    "Take-Two Interactive": 413, "Capcom": 381, "Atari": 363,
    "Tecmo Koei": 338, "Square Enix": 233,
    "Warner Bros. Interactive Entertainment": 232,
    "Disney Interactive Studios": 218, "Unknown": 203, "Eidos Interactive": 198,
    "Midway Games": 198, "505 Games": 192, "Microsoft Game Studios": 189,
    "Acclaim Entertainment": 184, "D3Publisher": 184, "Vivendi Games": 164,
    "Codemasters": 152, "Idea Factory": 129, "Deep Silver": 122,
    "Nippon Ichi Software": 105, "Zoo Digital Publishing": 104,
    "Majesco Entertainment": 92,
}  # fmt: skip
TAIL_PUBLISHER_ROWS = 3680
PUBLISHER_NA_SHARE = 58 / 16598

# Releases per year, 1980-2016 (the real file also has 4 rows in 2017/2020).
YEAR_COUNTS = (
    9, 46, 36, 17, 14, 14, 21, 16, 15, 17, 16, 41, 43, 60, 121, 219, 263, 289,
    379, 338, 349, 482, 829, 775, 763, 941, 1008, 1202, 1428, 1431, 1259, 1139,
    657, 546, 582, 614, 344,
)
FIRST_YEAR = 1980
YEAR_NA_SHARE = 271 / 16598

# Titles (distinct names) by how many platforms they were released on.
PLATFORMS_PER_TITLE = {1: 8718, 2: 1502, 3: 710, 4: 283, 5: 142, 6: 88, 7: 32, 8: 13, 9: 4}

# log(Global_Sales in millions) = franchise + title + release effects; the
# sum has the real file's spread (sd ~1.46) and median (~0.17).
LOG_SALES_MEAN = -1.8
FRANCHISE_SD, TITLE_SD, RELEASE_SD = 1.0, 0.6, 1.0
# Dirichlet concentration around a platform's NA/EU/JP shares, and the
# spread of Other's ratio to them.
SHARE_CONCENTRATION = 1.0
OTHER_RATIO_SD = 0.5

# Name parts: mixed-radix digits of a franchise number pick one of each, so
# every franchise (and, with the entry number, every title) is unique.
PREFIXES = (
    "Super", "Mega", "Crystal", "Shadow", "Iron", "Star", "Dragon", "Neon",
    "Galactic", "Royal", "Lost", "Eternal", "Wild", "Turbo", "Phantom",
    "Crimson", "Silent", "Urban", "Mystic", "Atomic", "Hyper", "Ancient",
    "Frozen", "Golden", "Savage", "Rogue", "Cyber", "Lunar", "Solar", "Thunder",
    "Velvet", "Hidden", "Brave", "Tiny", "Grand", "Final", "Infinite", "Cosmic",
    "Pocket", "Extreme", "Sacred", "Blazing", "Retro", "Dark", "Little",
    "Magic", "Robo", "Mighty",
)  # fmt: skip
NOUNS = (
    "Quest", "Legends", "Racer", "Warriors", "Kingdom", "Tactics", "Odyssey",
    "Knights", "Saga", "Rally", "Heroes", "Arena", "Chronicles", "Frontier",
    "Empire", "Soccer", "Golf", "Tennis", "Hockey", "Football", "Baseball",
    "Fighter", "Ninja", "Pirates", "Galaxy", "Island", "Academy", "Party",
    "Puzzle", "Park", "Safari", "Dungeon", "Commando", "Squadron", "Patrol",
    "Striker", "Drift", "Trucks", "Farm", "Story", "Zoo", "Circus", "Derby",
    "Tycoon", "Blaster", "Samurai", "Wrestling", "Garden",
)  # fmt: skip
PLACES = (
    "", " of Atlantis", " of the North", " in Space", " of Doom", " World",
    " Tokyo", " Osaka", " USA", " Europe", " Forever", " Unleashed",
    " Adventures", " Deluxe", " Collection", " Online", " Advance", " 3D",
    " Portable", " Revolution", " Origins", " Reloaded", " Evolution",
    " Plus", " HD", " Turbo",
)  # fmt: skip
EDITIONS = ("", " Zero", " DX", " Neo", " Max", " EX", " Next", " Gold", " Prime", " Mini")
SUBTITLES = (
    "Rise of the Titans", "The Lost Levels", "Heroes, Villains and Friends",
    "Director's Cut", 'The "Forbidden" Tapes', "Return to the Past",
    "Shadows of Tomorrow", "Game of the Year Edition", "The Final Chapter",
    "Team Up!", "Back\\Slash Special", "The Party", "Rebirth",
    "Legends Reborn", "World Tour", "Battle Royale",
)  # fmt: skip
TAIL_PUBLISHER_PARTS = (
    ("Blue", "Red", "Northern", "Pixel", "Quantum", "Silver", "Lucky", "Bright",
     "Iron", "Velvet", "Paper", "Clever", "Kyoto", "Nordic", "Sunset", "Arcade"),
    ("Harbor", "Fox", "Tree", "Cat", "Bear", "Owl", "Wave", "Stone", "Leaf",
     "Bolt", "Moon", "Cloud", "Forge", "Gate"),
    ("Games", "Interactive", "Entertainment", "Software", "Studios"),
)  # fmt: skip

# A few titles end in a non-ASCII mark (the real file has 'α', 'é', '°', 'Ø');
# appended, never substituted, so no two titles compare equal under an
# accent-insensitive collation.
NON_ASCII_SHARE = 0.004
NON_ASCII_MARKS = (" α", " Ω", " Ø", " ★", " Zürich", " 🎮")

# What makes each kind of dirty row dirty.
BAD_NAME_CHARACTERS = ("\t", "\n", "\x07", "\x1b", "\x7f", "\x0b")
BAD_YEARS = ("1975", "2099", "1979", "2150", "19O8", "20l0")
UNKNOWN_PLATFORMS = ("VB", "Lynx", "Jaguar", "NGage", "Ouya", "MSX", "Stadia", "CDi")
UNKNOWN_GENRES = ("Rhythm", "MMO", "Sandbox", "Educational", "Board Game", "Visual Novel")


def dirty_counts(n_rows: int, dirty_share: float = 0.01) -> dict[str, int]:
    """How many dirty rows of each kind `write_csv` puts in a file (seed-free)."""
    n_dirty = round(n_rows * dirty_share)
    base, extra = divmod(n_dirty, len(DIRTY_KINDS))
    return {kind: base + (i < extra) for i, kind in enumerate(DIRTY_KINDS)}


def write_csv(path: Path | str, n_rows: int, seed: int = 0, dirty_share: float = 0.01) -> Path:
    """Write `n_rows` vgsales-shaped rows (plus the header) to `path`; return it.

    `dirty_share` of the rows are dirty, spread over `DIRTY_KINDS` as
    `dirty_counts` says; the rest pass every warehouse rule.
    """
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    if not 0 <= dirty_share <= 1:
        raise ValueError(f"dirty_share must be within [0, 1], got {dirty_share}")
    counts = dirty_counts(n_rows, dirty_share)
    if counts["duplicate_release"] + counts["duplicate_rank"] > n_rows - sum(counts.values()):
        raise ValueError(
            f"dirty_share={dirty_share} leaves too few clean rows to duplicate in {n_rows} rows"
        )
    rng = np.random.default_rng(seed)
    rows = _clean_rows(rng, n_rows)
    kinds = _make_dirty(rng, rows, counts)
    rank = _ranks(rows["global"], kinds, rows.pop("rank_source"))
    order = np.argsort(rank, kind="stable")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(
            zip(
                rank[order].tolist(),
                rows["name"][order],
                rows["platform"][order],
                rows["year"][order],
                rows["genre"][order],
                rows["publisher"][order],
                *(_format_cents(rows[region][order]) for region in _SALES_COLUMNS),
            )
        )
    return path


_REGIONS = ("na", "eu", "jp", "other")
_SALES_COLUMNS = (*_REGIONS, "global")


def _weights(counts) -> np.ndarray:
    values = np.asarray(list(counts), dtype=float)
    return values / values.sum()


def _franchise_names(rng: np.random.Generator, n: int) -> list[str]:
    """`n` distinct franchise names: distinct numbers read as mixed-radix digits."""
    radix = (len(PREFIXES), len(NOUNS), len(PLACES))
    capacity = max(int(np.prod(radix)) * len(EDITIONS), 2 * n)
    names = []
    for number in rng.choice(capacity, n, replace=False).tolist():
        prefix, rest = number % radix[0], number // radix[0]
        noun, rest = rest % radix[1], rest // radix[1]
        place, edition = rest % radix[2], rest // radix[2]
        suffix = EDITIONS[edition] if edition < len(EDITIONS) else f" Vol. {edition}"
        names.append(f"{PREFIXES[prefix]} {NOUNS[noun]}{PLACES[place]}{suffix}")
    return names


def _clean_rows(rng: np.random.Generator, n_rows: int) -> dict[str, np.ndarray]:
    """`n_rows` releases that pass every rule, grouped in titles and franchises."""
    codes = list(PLATFORMS)
    platform_rows = np.array([PLATFORMS[c][0] for c in codes], dtype=float)
    years = np.arange(FIRST_YEAR, FIRST_YEAR + len(YEAR_COUNTS))
    first = np.array([PLATFORMS[c][1] for c in codes])
    last = np.array([PLATFORMS[c][2] for c in codes])
    active = (years[:, None] >= first) & (years[:, None] <= last)
    # A platform's releases spread evenly over its main years, rarely outside
    # them (the real file has such rows).
    year_platform_weight = platform_rows / active.sum(axis=0) * np.where(active, 1.0, 0.003)

    # Titles in franchises (runs of consecutive titles, entries in year
    # order), each on as many platforms as the real mix says, at most the
    # platforms active in its year; then cut where n_rows releases are reached.
    platforms_per_title = list(PLATFORMS_PER_TITLE)
    platforms_weights = _weights(PLATFORMS_PER_TITLE.values())
    n_titles = int(n_rows / np.dot(platforms_per_title, platforms_weights) * 1.5) + 16
    franchise = np.repeat(np.arange(n_titles), rng.geometric(0.45, n_titles))[:n_titles]
    title_year_index = rng.choice(len(YEAR_COUNTS), n_titles, p=_weights(YEAR_COUNTS))
    title_year_index = title_year_index[np.lexsort((title_year_index, franchise))]
    per_title = rng.choice(platforms_per_title, n_titles, p=platforms_weights)
    per_title = np.minimum(per_title, active.sum(axis=1)[title_year_index])
    n_titles = int(np.searchsorted(np.cumsum(per_title), n_rows)) + 1 if n_rows else 0
    franchise, title_year_index = franchise[:n_titles], title_year_index[:n_titles]
    per_title = per_title[:n_titles]
    if n_titles:
        per_title[-1] -= per_title.sum() - n_rows
    n_franchises = int(franchise[-1]) + 1 if n_titles else 0
    entry = np.arange(n_titles) - np.searchsorted(franchise, franchise)
    franchise_names = _franchise_names(rng, n_franchises)
    subtitle = rng.integers(0, len(SUBTITLES) * 3, n_titles)  # a third get a subtitle
    title_names = np.array(
        [
            franchise_names[f] if e == 0
            else f"{franchise_names[f]} {e + 1}"
            + (f": {SUBTITLES[s]}" if s < len(SUBTITLES) else "")
            for f, e, s in zip(franchise.tolist(), entry.tolist(), subtitle.tolist())
        ],
        dtype=object,
    )  # fmt: skip
    marked = np.flatnonzero(rng.random(n_titles) < NON_ASCII_SHARE)
    title_names[marked] = title_names[marked] + np.array(NON_ASCII_MARKS, dtype=object)[
        rng.integers(0, len(NON_ASCII_MARKS), len(marked))
    ]
    franchise_genre = rng.choice(list(GENRES), n_franchises, p=_weights(GENRES.values()))
    publisher_names = np.array([*PUBLISHERS, *_tail_publishers()], dtype=object)
    tail = len(publisher_names) - len(PUBLISHERS)
    tail_weights = TAIL_PUBLISHER_ROWS / np.arange(1, tail + 1) / np.sum(1 / np.arange(1, tail + 1))
    publisher_weights = _weights([*PUBLISHERS.values(), *tail_weights])
    franchise_publisher = rng.choice(publisher_names, n_franchises, p=publisher_weights)
    franchise_effect = rng.normal(0, FRANCHISE_SD, n_franchises)
    title_effect = franchise_effect[franchise] + rng.normal(0, TITLE_SD, n_titles)

    # Each title's platforms: weighted sampling without replacement among the
    # platforms of its year (largest log(u)/w keys, Efraimidis-Spirakis).
    keys = np.log(rng.random((n_titles, len(codes)))) / year_platform_weight[title_year_index]
    ranked_platforms = np.argsort(-keys, axis=1)
    title = np.repeat(np.arange(n_titles), per_title)
    slot = np.arange(n_rows) - np.repeat(np.cumsum(per_title) - per_title, per_title)
    platform = ranked_platforms[title, slot]

    offset = rng.choice(3, n_rows, p=(0.8, 0.17, 0.03))
    year = np.minimum(years[title_year_index[title]] + offset, years[-1])
    year_text = year.astype(str).astype(object)
    year_text[rng.random(n_rows) < YEAR_NA_SHARE] = "N/A"
    publisher = franchise_publisher[franchise[title]]
    publisher[rng.random(n_rows) < PUBLISHER_NA_SHARE] = "N/A"

    # Sales in cents: regional figures and Global each rounded from the same
    # unrounded figures, so Global is the regional sum within 4 x 0.5 cent.
    log_sales = LOG_SALES_MEAN + title_effect[title] + rng.normal(0, RELEASE_SD, n_rows)
    global_cents = np.maximum(np.exp(log_sales) * 100, 1.0)
    # NA/EU/JP split sparsely around the platform's profile (many releases
    # skip a region); Other follows the rest at about the platform's ratio.
    profile = np.array([PLATFORMS[c][3] for c in codes])[platform]
    main = rng.gamma(SHARE_CONCENTRATION * profile[:, :3] + 0.02)
    main /= main.sum(axis=1, keepdims=True)
    other = profile[:, 3] / (1 - profile[:, 3]) * rng.lognormal(0, OTHER_RATIO_SD, n_rows)
    shares = np.column_stack([main, other]) / (1 + other)[:, None]
    regional = global_cents[:, None] * shares
    rows = {
        "name": title_names[title],
        "platform": np.array(codes, dtype=object)[platform],
        "year": year_text,
        "genre": franchise_genre.astype(object)[franchise[title]],
        "publisher": publisher,
        "global": np.rint(global_cents).astype(np.int64),
        "rank_source": np.arange(n_rows),
    }
    for i, region in enumerate(_REGIONS):
        rows[region] = np.rint(regional[:, i]).astype(np.int64)
    return rows


def _tail_publishers() -> list[str]:
    first, second, kind = TAIL_PUBLISHER_PARTS
    return [f"{a} {b} {c}" for a in first for b in second for c in kind][::7]


def _make_dirty(
    rng: np.random.Generator, rows: dict[str, np.ndarray], counts: dict[str, int]
) -> np.ndarray:
    """Turn rows into dirty ones in place; return each row's kind ('' = clean).

    Duplicates copy (or share the Rank of) distinct clean rows, so each dirty
    row makes exactly one row of its pair fail.
    """
    n_rows = len(rows["name"])
    kinds = np.full(n_rows, "", dtype=object)
    positions = rng.permutation(n_rows)
    n_dirty = sum(counts.values())
    dirty, clean = positions[:n_dirty], positions[n_dirty:]
    at = {}
    start = 0
    for kind in DIRTY_KINDS:
        at[kind] = dirty[start : start + counts[kind]]
        kinds[at[kind]] = kind
        start += counts[kind]
    originals = clean[: counts["duplicate_release"] + counts["duplicate_rank"]]

    def pick(options, idx):
        return np.array(options, dtype=object)[rng.integers(0, len(options), len(idx))]

    rows["name"][at["missing_required"]] = ""
    idx = at["invalid_name"]
    bad = pick(BAD_NAME_CHARACTERS, idx)
    rows["name"][idx] = [
        f"{name[: len(name) // 2]}{char}{name[len(name) // 2 :]}"
        for name, char in zip(rows["name"][idx], bad)
    ]
    rows["year"][at["invalid_year"]] = pick(BAD_YEARS, at["invalid_year"])
    idx = at["negative_sales"]
    region = rng.integers(0, len(_REGIONS), len(idx))
    for i, name in enumerate(_REGIONS):
        hit = idx[region == i]
        rows[name][hit] = -rng.integers(1, 200, len(hit))
    rows["global"][idx] = sum(rows[name][idx] for name in _REGIONS)
    idx = at["sales_sum_inconsistent"]
    rows["global"][idx] += rng.integers(10, 300, len(idx))
    rows["platform"][at["unknown_platform"]] = pick(UNKNOWN_PLATFORMS, at["unknown_platform"])
    rows["genre"][at["unknown_genre"]] = pick(UNKNOWN_GENRES, at["unknown_genre"])
    copies, sources = at["duplicate_release"], originals[: len(at["duplicate_release"])]
    for column in rows:
        if column != "rank_source":
            rows[column][copies] = rows[column][sources]
    rows["rank_source"][at["duplicate_rank"]] = originals[len(copies) :]
    return kinds


def _ranks(global_cents: np.ndarray, kinds: np.ndarray, rank_source: np.ndarray) -> np.ndarray:
    """Rank by Global (1 = best seller); duplicate_rank rows take another row's."""
    rank = np.empty(len(global_cents), dtype=np.int64)
    rank[np.argsort(-global_cents, kind="stable")] = np.arange(1, len(global_cents) + 1)
    shared = kinds == "duplicate_rank"
    rank[shared] = rank[rank_source[shared]]
    return rank


def _cents_text(cents: int) -> str:
    """As the real file writes numbers: 0.38, 0.1, 0, 41.49, -0.5."""
    whole, fraction = divmod(abs(cents), 100)
    text = f"{whole}.{fraction:02d}".rstrip("0").rstrip(".")
    return f"-{text}" if cents < 0 else text


def _format_cents(cents: np.ndarray) -> np.ndarray:
    if not len(cents):
        return np.array([], dtype=object)
    low, high = int(cents.min()), int(cents.max())
    table = np.array([_cents_text(c) for c in range(low, high + 1)], dtype=object)
    return table[cents - low]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic vgsales-shaped CSV.")
    parser.add_argument("--rows", type=int, required=True, help="data rows to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--dirty-share", type=float, default=0.01, help="share of dirty rows")
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        path = write_csv(args.out, args.rows, seed=args.seed, dirty_share=args.dirty_share)
    except ValueError as exc:
        sys.exit(f"[synthetic] error: {exc}")
    print(
        f"[synthetic] wrote {args.rows:,} rows to {path} in {time.perf_counter() - started:.1f}s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
