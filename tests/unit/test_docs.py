"""`make help` is the list of targets the README points to: every target has its line."""

from __future__ import annotations

import re

from ml.settings import ROOT


def test_every_make_target_says_what_it_does():
    text = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", text, flags=re.MULTILINE))
    described = set(re.findall(r"^([a-z][a-z0-9-]*):.*## \S", text, flags=re.MULTILINE))
    assert {"run", "test", "test-fast", "deploy", "deployments", "db-shell"} <= targets
    assert targets - described == set()
