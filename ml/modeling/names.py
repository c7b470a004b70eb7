"""Names as people write them, resolved to the names the data files them under.

A caller writes "Sony Interactive Entertainment", "Switch" or
"Action-Adventure"; the model knows `Sony Computer Entertainment`, `NS` and
`Action`. The resolution is defined once, in the warehouse
(`int_names__written`, built from the reference seeds `ref_publisher_lineage`,
`ref_genre_names`, `ref_platforms` and `ref_platform_names`); this module
holds no list of its own. The pipeline reads the mart `ml_written_names`,
stores it with each registered model version (`NAME_REFERENCE_TAG`), and the
API, the point-in-time history and the forecast goals resolve through that
copy, so serving never reads the warehouse per request.

`Resolver.correct` is what the API does with a request's categories:

1. a value the model knows is kept;
2. a written name of the reference (a rename, a label, "Switch") is replaced
   by the name it resolves to, when the model knows that name;
3. a value differing from exactly one known category only by case is
   replaced by it;
4. otherwise the value stays (the model treats it as unseen) and the closest
   known names are suggested: known categories and written names alike, a
   written name suggesting the name it resolves to. A suggestion never
   changes a number ("PS6" is not "PS" or "PS5", "Switch 2" not "Switch")
   and nothing is suggested for fewer than `MIN_SUGGESTED_LENGTH`
   characters: a code one letter from another names a different console.

Names match as MariaDB's collation compares them (case, accents and trailing
spaces ignored), so Python and the warehouse agree on what is "the same name".
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import re
import unicodedata
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

# The registered version's tag holding the name reference it serves with,
# compressed (`NameReference.to_tag`): an MLflow run tag holds at most 8,000
# characters, and the reference's JSON is already close to that.
NAME_REFERENCE_TAG = "name_reference"
# Request fields the reference resolves (`int_names__written.name_field`).
FIELDS = ("publisher", "genre", "platform")
# Columns of `ml_written_names`.
COLUMNS = ("name_field", "written_name", "canonical_name", "link_kind")
# Suggestions per field, how alike (difflib ratio) a suggestion must be, and
# the shortest value suggestions are made for.
MAX_SUGGESTIONS = 3
MIN_LIKENESS = 0.75
MIN_SUGGESTED_LENGTH = 4

_NUMBERS = re.compile(r"[0-9]+")


def collation_key(text: str) -> str:
    """What MariaDB compares under utf8mb4_unicode_ci: case, accents and
    trailing spaces ignored ("Pokémon " and "pokemon" are one name)."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return bare.lower().rstrip(" ")


def _numbers(text: str) -> list[str]:
    return _NUMBERS.findall(text)


@dataclass(frozen=True)
class Link:
    """A written name and the name it resolves to, with how they are linked."""

    written: str
    canonical: str
    kind: str


class NameReference:
    """The written names of each field and what they resolve to."""

    def __init__(self, rows: Iterable[tuple[str, str, str, str]]) -> None:
        self._links: dict[str, dict[str, Link]] = {field: {} for field in FIELDS}
        for field, written, canonical, kind in rows:
            links = self._links.setdefault(str(field), {})
            key = collation_key(str(written))
            if key in links and links[key].canonical != canonical:
                raise ValueError(
                    f"name reference: {field} {written!r} resolves to both "
                    f"{links[key].canonical!r} and {canonical!r}"
                )
            links[key] = Link(str(written), str(canonical), str(kind))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> NameReference:
        """From rows of `ml_written_names` (columns `COLUMNS`)."""
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"a name reference needs column(s) {', '.join(missing)}")
        return cls(frame.loc[:, list(COLUMNS)].itertuples(index=False, name=None))

    def link(self, field: str, value: str) -> Link | None:
        """How `value` is written in the reference, or None."""
        return self._links.get(field, {}).get(collation_key(value))

    def canonical(self, field: str, value: str) -> str:
        """The name `value` resolves to; itself when the reference lacks it."""
        found = self.link(field, value)
        return value if found is None else found.canonical

    def links(self, field: str) -> Iterable[Link]:
        """Every written name of `field`."""
        return self._links.get(field, {}).values()

    def to_json(self) -> str:
        """The reference as JSON: field -> kind -> canonical -> written names."""
        table: dict[str, dict[str, dict[str, list[str]]]] = {}
        for field, links in sorted(self._links.items()):
            for link in sorted(links.values(), key=lambda x: (x.kind, x.canonical, x.written)):
                names = table.setdefault(field, {}).setdefault(link.kind, {})
                names.setdefault(link.canonical, []).append(link.written)
        return json.dumps(table, ensure_ascii=False, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> NameReference:
        """The reference back from `to_json`."""
        return cls(
            (field, written, canonical, kind)
            for field, kinds in json.loads(text).items()
            for kind, names in kinds.items()
            for canonical, written_names in names.items()
            for written in written_names
        )

    def to_tag(self) -> str:
        """`to_json`, compressed into a version tag's value."""
        return base64.b64encode(zlib.compress(self.to_json().encode(), 9)).decode("ascii")

    @classmethod
    def from_tag(cls, value: str) -> NameReference:
        """The reference back from `to_tag`."""
        return cls.from_json(zlib.decompress(base64.b64decode(value)).decode())

    @property
    def digest(self) -> str:
        """Content hash: a changed reference is a changed model version."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return sum(len(links) for links in self._links.values())


class Resolver:
    """A model's known categories and the name reference: what the API does
    with a request's names (module docstring)."""

    def __init__(
        self, known: Mapping[str, frozenset[str]], names: NameReference | None = None
    ) -> None:
        # Column names come from the fitted pipeline, possibly as numpy
        # strings, which orjson refuses as response keys.
        self._known = {str(column): values for column, values in known.items()}
        self._names = names if names is not None else NameReference(())
        self._folded: dict[str, dict[str, list[str]]] = {}
        self._candidates: dict[str, dict[str, tuple[str, list[str]]]] = {}
        for column, values in self._known.items():
            folded: dict[str, list[str]] = {}
            for value in sorted(values):
                folded.setdefault(collation_key(value), []).append(value)
            self._folded[column] = folded
            # Suggestion candidates by key: the written form (for the number
            # rule) and the known names it stands for.
            candidates = {key: (spellings[0], spellings) for key, spellings in folded.items()}
            for link in self._names.links(column):
                target = self._known_as(column, link.canonical)
                if target is not None:
                    candidates.setdefault(collation_key(link.written), (link.written, [target]))
            self._candidates[column] = candidates

    def _known_as(self, column: str, name: str) -> str | None:
        """`name` as the model spells it, when it knows it (exactly or but for case)."""
        if name in self._known[column]:
            return name
        same = self._folded[column].get(collation_key(name), [])
        return same[0] if len(same) == 1 else None

    def correct(
        self, record: Mapping[str, object]
    ) -> tuple[Mapping[str, object], dict[str, str], dict[str, list[str]]]:
        """`(record, matched, did_you_mean)`: the record with resolved names
        replaced, the replaced fields with the name used, and suggestions for
        the fields still unknown."""
        matched: dict[str, str] = {}
        suggestions: dict[str, list[str]] = {}
        for column, seen in self._known.items():
            value = record.get(column)
            if not isinstance(value, str) or value in seen:
                continue
            link = self._names.link(column, value)
            target = None if link is None else self._known_as(column, link.canonical)
            if target is None:
                same = self._folded[column].get(collation_key(value), [])
                target = same[0] if len(same) == 1 else None
            if target is not None:
                matched[column] = target
                continue
            close = self.suggest(column, value)
            if close:
                suggestions[column] = close
        if matched:
            record = {**record, **matched}
        return record, matched, suggestions

    def suggest(self, column: str, value: str) -> list[str]:
        """Known names close to `value` (module docstring: the number and
        length rules), best first."""
        key = collation_key(value)
        ambiguous = self._folded.get(column, {}).get(key, [])
        if ambiguous:
            return ambiguous[:MAX_SUGGESTIONS]
        if len(key) < MIN_SUGGESTED_LENGTH:
            return []
        candidates = self._candidates.get(column, {})
        if not candidates:
            return []
        numbers = _numbers(value)
        found: list[str] = []
        for close in difflib.get_close_matches(key, candidates, n=len(candidates), cutoff=MIN_LIKENESS):
            written, targets = candidates[close]
            if _numbers(written) != numbers:
                continue
            found += [target for target in targets if target not in found]
            if len(found) >= MAX_SUGGESTIONS:
                break
        return found[:MAX_SUGGESTIONS]
