"""The request schemas the API publishes are the ones it enforces."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from ml.features import NOT_BLANK
from serve import schemas

VALID = {"platform": "Wii", "genre": "Racing", "publisher": "Nintendo", "year": 2008}
# Shorthand classes whose meaning differs between ECMA (JSON Schema), Python
# and Rust (pydantic) regular expressions.
SHORTHAND = re.compile(r"\\[sSdDwWbB]")


def test_published_patterns_use_no_engine_dependent_shorthand():
    document = json.dumps([schemas.ForecastRequest.model_json_schema(),
                           schemas.PredictRequest.model_json_schema()])
    patterns = re.findall(r'"pattern": ("(?:[^"\\]|\\.)*")', document)
    assert patterns and {json.loads(p) for p in patterns} == {NOT_BLANK}
    assert not [p for p in patterns if SHORTHAND.search(json.loads(p))]


@pytest.mark.parametrize("value", ["\u0085", " \u3000\t", "\x1c"])
def test_whitespace_only_categories_are_refused(value):
    # U+0085 passed ECMA's \S (the published pattern) and failed pydantic's.
    assert not re.search(NOT_BLANK, value)
    with pytest.raises(ValidationError):
        schemas.ForecastRequest.model_validate({**VALID, "platform": value})


@pytest.mark.parametrize("value", ["\ufeff", "x\u0085", "Wii"])
def test_categories_with_a_visible_character_are_accepted(value):
    assert re.search(NOT_BLANK, value)
    assert schemas.ForecastRequest.model_validate({**VALID, "genre": value}).genre == value
