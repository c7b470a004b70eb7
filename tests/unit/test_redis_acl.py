"""The Redis roles' rights, read from the files (no Redis): each role holds
what its function calls and nothing more, and stack.sh loads the functions
from the file the code calls (the roles against a live Redis:
tests/integration/test_redis_roles.py)."""

from __future__ import annotations

import re
from pathlib import Path

from ml.monitoring import stream
from ml.monitoring.stream import APPEND, SETTLE
from ml.settings import ROOT

STACK_SH = (ROOT / "scripts" / "stack.sh").read_text()


def test_the_acl_grants_exactly_what_the_functions_run():
    """A function runs with its caller's rights: each role holds the
    commands its function calls, and no role holds one the functions do not
    need (a rule added "for the script" would be a command the role can run)."""
    code = stream.LIBRARY.read_text()
    called = {c.lower() for c in re.findall(r"redis\.call\('([A-Z]+)'", code)}
    api = set(re.search(r'^REDIS_API_LOG="([^"]+)"', STACK_SH, re.M).group(1).split())
    drain_rules = set(re.search(r'^REDIS_DRAIN_LOG="([^"]+)"', STACK_SH, re.M).group(1).split())
    assert {f"+fcall|{APPEND}", "+xadd", "+memory|usage"} == api
    assert f"+fcall|{SETTLE}" in drain_rules
    assert called == {"xadd", "memory", "xinfo", "xack", "xdel", "xlen", "xgroup"}
    assert {rule.split("|")[0].lstrip("+") for rule in api | drain_rules} - {"fcall"} <= called | {
        "xreadgroup"}



def test_stack_sh_loads_the_functions_from_the_file_the_code_calls():
    path = re.search(r"^REDIS_FUNCTIONS=\$ROOT/(\S+)$", STACK_SH, re.M).group(1)
    assert (ROOT / path).resolve() == stream.LIBRARY.resolve()
    assert Path(stream.LIBRARY).read_text().startswith(f"#!lua name={stream.LIBRARY_NAME}\n")

