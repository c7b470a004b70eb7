"""Categories as a model knows them: a request's spelling matched to the
model's, and suggestions for a value it never saw.

"ps4" and "PS4" are the same console to a person but two categories to the
encoder, which treats the first as unseen and forecasts far less for it. A
value that differs from exactly one known category only by case is replaced
by that category (and the response says so); a value matching none gets the
closest known spellings as "did you mean" and is still predicted as unseen,
as before.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

# Suggestions per field, and how alike (difflib ratio) a suggestion must be.
MAX_SUGGESTIONS = 3
MIN_LIKENESS = 0.75


class Spellings:
    """The known categories of one model, indexed by their case-folded form."""

    def __init__(self, known: Mapping[str, frozenset[str]]) -> None:
        # Column names come from the fitted pipeline, possibly as numpy
        # strings, which orjson refuses as response keys.
        self._known = {str(column): values for column, values in known.items()}
        self._folded: dict[str, dict[str, list[str]]] = {}
        for column, values in self._known.items():
            index: dict[str, list[str]] = {}
            for value in sorted(values):
                index.setdefault(value.casefold(), []).append(value)
            self._folded[column] = index

    def correct(
        self, record: Mapping[str, object]
    ) -> tuple[Mapping[str, object], dict[str, str], dict[str, list[str]]]:
        """`(record, matched, did_you_mean)`: the record with case-insensitive
        matches replaced by the known spelling, the replaced fields with that
        spelling, and suggestions for the fields still unknown."""
        matched: dict[str, str] = {}
        suggestions: dict[str, list[str]] = {}
        for column, seen in self._known.items():
            value = record.get(column)
            if not isinstance(value, str) or value in seen:
                continue
            index = self._folded[column]
            same = index.get(value.casefold(), [])
            if len(same) == 1:
                matched[column] = same[0]
                continue
            close = same or [
                spelling
                for folded in difflib.get_close_matches(
                    value.casefold(), index, n=MAX_SUGGESTIONS, cutoff=MIN_LIKENESS
                )
                for spelling in index[folded]
            ]
            if close:
                suggestions[column] = close[:MAX_SUGGESTIONS]
        if matched:
            record = {**record, **matched}
        return record, matched, suggestions
