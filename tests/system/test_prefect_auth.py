"""The Prefect server asks for its auth string: no other local process can
list deployments or queue flow runs on the `vgsales` pool without it.

A server of its own (scripts/prefect_server.sh, temp home and port) is started
with a generated auth string; the API is asked without it, with a wrong one
and with it, over HTTP and through Prefect's own client as `make deploy`
and `make worker` use it (PREFECT_API_AUTH_STRING).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from ml.settings import ROOT
from tests.helpers import free_port

pytestmark = pytest.mark.slow

SCRIPT = ROOT / "scripts" / "prefect_server.sh"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect_auth")
    auth = f"vgsales:{secrets.token_hex(16)}"
    env = {**os.environ, "PREFECT_SERVER_HOME": str(home), "PREFECT_SERVER_PORT": str(free_port()),
           "PREFECT_API_AUTH_STRING": auth}
    url = subprocess.run([str(SCRIPT), "url"], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    started = subprocess.run([str(SCRIPT), "up"], env=env, capture_output=True, text=True,
                             timeout=300, check=False)
    assert started.returncode == 0, started.stderr
    try:
        yield url, auth, env
    finally:
        subprocess.run([str(SCRIPT), "down"], env=env, capture_output=True, timeout=120,
                       check=False)


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
