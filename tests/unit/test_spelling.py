"""`serve.model.spelling`: a request's category matched to the model's spelling."""

from __future__ import annotations

from serve.model.spelling import Spellings

KNOWN = {
    "platform": frozenset({"PS4", "Wii", "PC"}),
    "publisher": frozenset({"Ubisoft", "Electronic Arts", "SEGA", "Sega"}),
}


def test_case_only_differences_take_the_known_spelling():
    record = {"platform": "ps4", "publisher": "ubisoft", "year": 2016.0}
    fixed, matched, suggestions = Spellings(KNOWN).correct(record)
    assert fixed == {"platform": "PS4", "publisher": "Ubisoft", "year": 2016.0}
    assert matched == {"platform": "PS4", "publisher": "Ubisoft"} and suggestions == {}
    assert record["platform"] == "ps4"  # the caller's record is left as it was


def test_unknown_values_get_suggestions_and_stay_as_given():
    record = {"platform": "Wiii", "publisher": "Electronc Arts"}
    fixed, matched, suggestions = Spellings(KNOWN).correct(record)
    assert fixed == record and matched == {}
    assert suggestions == {"platform": ["Wii"], "publisher": ["Electronic Arts"]}
    assert Spellings(KNOWN).correct({"platform": "Brand New Console"})[2] == {}


def test_an_ambiguous_case_match_is_only_suggested():
    fixed, matched, suggestions = Spellings(KNOWN).correct({"publisher": "sega"})
    assert fixed == {"publisher": "sega"} and matched == {}
    assert suggestions == {"publisher": ["SEGA", "Sega"]}


def test_column_names_from_the_pipeline_become_plain_strings():
    import numpy as np
    import orjson

    spellings = Spellings({np.str_("platform"): frozenset({"PS4"})})
    _, matched, _ = spellings.correct({"platform": "ps4"})
    assert orjson.loads(orjson.dumps(matched)) == {"platform": "PS4"}
