"""The Prefect server asks for its auth string: no other local process can
list deployments or queue flow runs on the `vgsales` pool without it.

The session's server (tests/system/conftest.py: scripts/prefect_server.sh,
temp home and port, a generated auth string) is asked without it, with a
wrong one and with it, over HTTP and through Prefect's own client as
`make deploy` and `make worker` use it (PREFECT_API_AUTH_STRING).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from ml.settings import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(prefect_server):
    """The session's Prefect server (tests/system/conftest.py): started by
    scripts/prefect_server.sh with an auth string of its own; starting
    another here would only cost a server start."""
    env = {**os.environ, "PREFECT_API_AUTH_STRING": prefect_server.auth}
    return prefect_server.url, prefect_server.auth, env


def status_of(url: str, path: str, auth: str | None, method: str = "POST") -> int:
    request = urllib.request.Request(f"{url}{path}", method=method,
                                     data=b"{}" if method == "POST" else None,
                                     headers={"Content-Type": "application/json"})
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_api_refuses_requests_without_the_auth_string(server):
    url, auth, _ = server
    for path in ("/deployments/filter", "/work_pools/filter", "/flow_runs/filter"):
        assert status_of(url, path, None) == 401, path
        assert status_of(url, path, "vgsales:guessed") == 401, path
        assert status_of(url, path, auth) == 200, path
    # Liveness stays open, for probes and scripts/prefect_server.sh itself.
    assert status_of(url, "/health", None, method="GET") == 200


def client_reads_pools(url: str, env: dict) -> subprocess.CompletedProcess:
    code = ("import asyncio, json\n"
            "from prefect.client.orchestration import get_client\n"
            "async def main():\n"
            "    async with get_client() as client:\n"
            "        print(json.dumps([p.name for p in await client.read_work_pools()]))\n"
            "asyncio.run(main())\n")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**env, "PREFECT_API_URL": url}, check=False)


def test_prefect_clients_use_the_auth_string_from_the_settings(server):
    url, _, env = server
    allowed = client_reads_pools(url, env)
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert isinstance(json.loads(allowed.stdout.strip().splitlines()[-1]), list)
    refused = client_reads_pools(url, {k: v for k, v in env.items()
                                       if k != "PREFECT_API_AUTH_STRING"})
    assert refused.returncode != 0 and "401" in refused.stderr
