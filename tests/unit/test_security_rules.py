"""Security rules that need no service: which settings an API process never
holds, what the secret scan looks for, how identifiers are quoted
(the scan itself and the live checks are tests/system/test_security.py)."""

from __future__ import annotations

import re

import pytest

from ml.settings import environ_without_writer
from ml.warehouse.identifiers import quoted

# What a tracked file must never hold (tests/system/test_security.py scans them):
# well-known credential formats, and our own generated secrets
# (scripts/stack.sh: 24 random bytes as 48 hex digits).
SECRET_PATTERNS = {
    "private key": re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(rb"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(rb"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(rb"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "password in a URL": re.compile(rb"[a-z][a-z0-9+.-]*://[^/\s:@'\"]*:[^/\s:@'\"${}<>]{6,}@"),
    "literal password": re.compile(rb"(?i)passw(or)?d\w*['\"]?\s*[:=]\s*['\"][^'\"\s${}]{6,}['\"]"),
    "generated secret": re.compile(rb"\b[0-9a-f]{48}\b"),
}


def test_environ_without_writer(monkeypatch):
    # Long enough to be looked for inside other values (MIN_SECRET_LENGTH).
    admin, api = "admin-secret", "api-secret"
    monkeypatch.setenv("MARIADB_PASSWORD", "writer-secret")
    monkeypatch.setenv("MARIADB_USER", "writer")
    monkeypatch.setenv("MARIADB_READER_PASSWORD", "reader-secret")
    monkeypatch.setenv("REDIS_PASSWORD", admin)
    monkeypatch.setenv("REDIS_URL", f"redis://vgsales_admin:{admin}@127.0.0.1:1/5")
    for role in ("FLOWS", "DRAIN"):
        monkeypatch.setenv(f"REDIS_{role}_PASSWORD", f"{role.lower()}-secret")
    monkeypatch.setenv("REDIS_API_PASSWORD", api)
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "vgsales:prefect-secret")
    # A variable of the user's own that carries a secret goes too.
    monkeypatch.setenv("MY_ADMIN_URL", f"redis://x:{admin}@h/0")
    scrubbed = environ_without_writer()
    for gone in ("MARIADB_PASSWORD", "MARIADB_USER", "REDIS_PASSWORD", "REDIS_FLOWS_PASSWORD",
                 "REDIS_DRAIN_PASSWORD", "PREFECT_API_AUTH_STRING", "MY_ADMIN_URL"):
        assert gone not in scrubbed
        monkeypatch.delenv(gone)
    assert scrubbed["MARIADB_READER_PASSWORD"] == "reader-secret"
    assert admin not in str(scrubbed) and "PATH" in scrubbed
    # Redis as the API's own user, on the same server and db.
    assert scrubbed["REDIS_URL"] == f"redis://vgsales_api:{api}@127.0.0.1:1/5"
    monkeypatch.setenv("REDIS_URL", scrubbed["REDIS_URL"])
    assert environ_without_writer() is None
    # Without the API's password, REDIS_URL keeps no login at all.
    monkeypatch.delenv("REDIS_API_PASSWORD")
    monkeypatch.setenv("REDIS_URL", f"redis://vgsales_admin:{admin}@127.0.0.1:1/5")
    assert environ_without_writer()["REDIS_URL"] == "redis://127.0.0.1:1/5"



def test_secret_patterns_catch_what_they_should():
    # Each sample is split so that this file itself holds no match.
    samples = {
        "private key": b"-----BEGIN RSA PRIVATE" + b" KEY-----",
        "AWS access key": b"key = AKIA" + b"ABCDEFGHIJKLMNOP",
        "GitHub token": b"ghp_" + b"a" * 36,
        "Slack token": b"xox" + b"b-1234567890-abc",
        "password in a URL": b"mysql://writer:" + b"hunter2secret@db/x",
        "literal password": b'MARIADB_PASSWORD = "' + b'hunter2secret"',
        "generated secret": b"x='" + b"ab" * 24 + b"'",
    }
    for kind, sample in samples.items():
        assert SECRET_PATTERNS[kind].search(sample), kind
    harmless = (b"redis://:${REDIS_PASSWORD}@redis redis://:<generated>@host "
                b"password=settings.mariadb_password " + b"a" * 64)
    assert not any(p.search(harmless) for p in SECRET_PATTERNS.values())



def test_identifiers_are_quoted_by_sqlalchemy():
    assert quoted("vgsales_raw", "raw_vgsales") == "`vgsales_raw`.`raw_vgsales`"
    assert quoted("odd`name; drop table x") == "`odd``name; drop table x`"
    with pytest.raises(ValueError):
        quoted("db", "")

