"""The edge's configuration, as rendered: nginx's limits and gunicorn's come
from one place (serve/edge/limits.py) and agree; only predictions are retried.
nginx itself runs it in the system tests (tests/system/test_edge.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ml.settings import Settings
from serve import gunicorn_conf, schemas
from serve.app import REQUEST_ID
from serve.edge import limits, nginx
from serve.edge.launcher import Edge
from serve.routes import predictions

UPSTREAMS = [("127.0.0.1", 8001), ("127.0.0.1", 8002)]
CONFIG = nginx.render("127.0.0.1:8000", UPSTREAMS, Path("/run/edge/8000"))


def directive(name: str, text: str = CONFIG) -> list[str]:
    """The values of every `name` directive in `text`."""
    return re.findall(rf"^\s*{name}\s+([^;]*);", text, re.M)


def locations() -> dict[str, str]:
    """Each `location` block's argument -> its body."""
    return dict(re.findall(r"location ([^{]+?) \{(.*?)\n\s*\}\n", CONFIG, re.S))


def test_every_path_nginx_writes_is_under_its_prefix():
    paths = directive("pid") + [v.split()[0] for name in (
        "client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path",
        "scgi_temp_path") for v in directive(name)]
    assert len(paths) == 6 and all(p.startswith("/run/edge/8000/") for p in paths), paths
    assert directive("error_log") == ["stderr warn"]
    assert directive("access_log") == ["off"]
    assert directive("daemon") == ["off"]
    assert directive("worker_shutdown_timeout") == [f"{limits.CLIENT_TIMEOUT_SECONDS}s"]


def test_limits_come_from_the_one_place():
    assert directive("client_max_body_size") == [str(schemas.MAX_BODY_BYTES)]
    assert directive("client_body_buffer_size") == [str(schemas.MAX_BODY_BYTES)]
    assert directive("client_header_timeout") == [f"{limits.CLIENT_TIMEOUT_SECONDS}s"]
    assert directive("client_body_timeout") == [f"{limits.CLIENT_TIMEOUT_SECONDS}s"]
    assert directive("large_client_header_buffers") == [
        f"{limits.HEAD_BUFFERS} {limits.HEAD_BUFFER_BYTES}"]
    assert directive("limit_conn") == [f"per_client {limits.MAX_REQUESTS_PER_CLIENT}"]
    assert directive("worker_connections") == [str(2 * limits.MAX_CONNECTIONS)]
    assert directive("proxy_request_buffering") == ["on"]


def test_gunicorn_accepts_whatever_nginx_lets_through():
    assert gunicorn_conf.worker_class == "gthread"  # the stock one
    assert gunicorn_conf.limit_request_line >= limits.HEAD_BUFFER_BYTES
    assert gunicorn_conf.limit_request_field_size >= limits.HEAD_BUFFER_BYTES
    # The most fields nginx's buffers can hold ("a:" and CRLF each).
    assert gunicorn_conf.limit_request_fields >= limits.HEAD_BUFFERS * limits.HEAD_BUFFER_BYTES // 4
    assert gunicorn_conf.timeout == limits.WORKER_TIMEOUT_SECONDS
    assert directive("proxy_read_timeout") == [f"{limits.ANSWER_TIMEOUT_SECONDS}s"]
    assert limits.ANSWER_TIMEOUT_SECONDS > gunicorn_conf.timeout


def test_instances_keep_idle_connections_longer_than_nginx():
    """Else nginx could send a request on a connection gunicorn is closing:
    a 502 for a POST it may not retry."""
    upstream = re.search(r"upstream api_instances \{(.*?)\}", CONFIG, re.S).group(1)
    [timeout] = directive("keepalive_timeout", upstream)
    assert int(timeout.rstrip("s")) < gunicorn_conf.keepalive
    assert directive("proxy_http_version") == ["1.1"]
    assert 'Connection ""' in directive("proxy_set_header")


def test_instances_are_balanced_by_least_connections():
    upstream = re.search(r"upstream api_instances \{(.*?)\}", CONFIG, re.S).group(1)
    assert "least_conn;" in upstream
    servers = directive("server", upstream)
    assert [s.split()[0] for s in servers] == [f"{h}:{p}" for h, p in UPSTREAMS]
    assert all(f"fail_timeout={limits.FAILED_INSTANCE_SECONDS}s" in s for s in servers)


def test_only_prediction_routes_are_retried_after_they_were_sent():
    routes = {rule.rule for rule in _rules(predictions.bp)}
    assert set(limits.PREDICTION_PATHS) == routes
    blocks = locations()
    for path in limits.PREDICTION_PATHS:
        assert directive("proxy_next_upstream", blocks[f"= {path}"]) == [
            "error timeout non_idempotent"]
    assert directive("proxy_next_upstream", blocks["/admin/"]) == ["off"]
    # A reload is re-sent only when the instance that should answer is down.
    assert directive("proxy_next_upstream", blocks["= /admin/reload"]) == ["error non_idempotent"]
    assert CONFIG.count("non_idempotent") == len(limits.PREDICTION_PATHS) + 1


def test_a_reload_reaches_each_instance_once():
    """The first instance answers a reload and every other one gets a
    mirror: none gets both, whose order would decide what the answer says
    was served before (tests/system/test_serve.py)."""
    blocks = locations()
    upstream = re.search(r"upstream api_reload \{(.*?)\}", CONFIG, re.S).group(1)
    assert directive("server", upstream) == [
        f"{h}:{p}" if i == 0 else f"{h}:{p} backup" for i, (h, p) in enumerate(UPSTREAMS)]
    assert directive("proxy_pass", blocks["= /admin/reload"]) == ["http://api_reload"]
    mirrored = [directive("proxy_pass", blocks[f"= {target}"])[0]
                for target in directive("mirror", blocks["= /admin/reload"])]
    assert mirrored == [f"http://{h}:{p}/admin/reload" for h, p in UPSTREAMS[1:]]


def _rules(*blueprints) -> list:
    """The URL rules blueprints register, without building the API."""
    from flask import Flask

    app = Flask(__name__)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    return [rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"]


def test_the_405_nginx_answers_names_each_routes_methods():
    """nginx refuses TRACE itself; its Allow header must say what Flask would."""
    from serve.routes import docs, operations

    rules = _rules(predictions.bp, operations.bp, docs.bp)
    posts = {rule.rule for rule in rules if "POST" in rule.methods}
    assert posts == set(limits.POST_PATHS)
    assert all(rule.methods == {"POST", "OPTIONS"} for rule in rules if rule.rule in posts)
    assert all(rule.methods == {"GET", "HEAD", "OPTIONS"} for rule in rules
               if rule.rule not in posts)
    block = locations()["= /_edge/405"]
    assert 'add_header Allow "$api_allow" always;' in block


def test_forwarded_headers_and_request_ids_are_set_by_nginx():
    headers = dict(value.split(" ", 1) for value in directive("proxy_set_header"))
    # Replaced, never appended to: the app trusts exactly one proxy.
    assert headers["X-Forwarded-For"] == "$remote_addr"
    assert headers["X-Request-ID"] == "$api_request_id"
    pattern = re.search(r'"~\^(.*)\$" \$http_x_request_id;', CONFIG).group(1)
    assert pattern == REQUEST_ID.pattern == limits.REQUEST_ID_PATTERN


@pytest.mark.parametrize("error", nginx.ERRORS, ids=lambda e: str(e.nginx_status))
def test_nginx_refusals_have_the_api_error_shape(error):
    block = locations()[f"= /{error.location}"]
    [(status, body)] = re.findall(r"^\s*return (\d+) '(.*)';$", block, re.M)
    assert int(status) == error.status
    answer = json.loads(body.replace("$api_request_id", "abc"))
    assert set(answer) == {"error", "message", "detail", "request_id"}
    assert answer["request_id"] == "abc"
    assert f"error_page {error.nginx_status} ={error.status} /{error.location};" in CONFIG


@pytest.mark.parametrize(("cpus", "instances", "workers"), [(2, 2, 1), (2, 1, 2), (2, 3, 1),
                                                             (8, 2, 4)])
def test_the_instances_workers_together_match_the_cores(cpus, instances, workers):
    assert limits.workers_per_instance(Settings(api_instances=instances), cpus) == workers


def test_instance_ports_follow_the_first():
    settings = Settings(api_instance_port=9100, api_instances=3)
    assert limits.instance_ports(settings) == [9100, 9101, 9102]


def test_one_line_says_where_the_api_docs_and_report_are(tmp_path):
    report = tmp_path / "index.html"
    edge = Edge(Settings(api_port=8410, api_instance_port=8411), report=report)
    missing = edge.where()
    assert "http://127.0.0.1:8410 " in missing and "http://127.0.0.1:8410/docs" in missing
    assert "not built yet" in missing and "\n" not in missing
    report.write_text("<html>")
    assert f"report: {report}" in edge.where()
