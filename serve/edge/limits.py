"""The edge's limits and sizes, in one place.

nginx's configuration (`serve/edge/nginx.conf.j2`) and gunicorn's settings
(`serve/gunicorn_conf.py`) are both derived from these, so the proxy and the
app servers behind it cannot disagree: whatever nginx lets through, gunicorn
accepts, and gunicorn keeps an idle connection open longer than nginx does.
"""

from __future__ import annotations

import os

from ml.settings import Settings
from serve.schemas import MAX_BODY_BYTES

# A request's head must arrive within this, and its body must keep coming (a
# gap this long between two reads ends it); an answer's reader must take
# bytes at least this often. nginx answers 408, or closes, past it.
CLIENT_TIMEOUT_SECONDS = 10
# An idle client connection is closed after this.
CLIENT_KEEPALIVE_SECONDS = 15
# A head (request line and headers) is read into buffers of this size: a
# line longer than one buffer is refused (414 for the request line, 431 for
# a header), and so is a head longer than all of them together (431).
HEAD_BUFFER_BYTES = 8190
HEAD_BUFFERS = 4
# The largest body, as sent (after chunked decoding): 413 beyond it. Bodies up
# to this size are kept in memory, never written to a temporary file.
BODY_BYTES = MAX_BODY_BYTES
# Open client connections nginx holds at most (idle ones included), and
# requests in progress per client address (503 beyond it).
MAX_CONNECTIONS = 4096
MAX_REQUESTS_PER_CLIENT = 256
# nginx keeps up to this many idle connections to the instances, each for at
# most UPSTREAM_KEEPALIVE_SECONDS. gunicorn keeps an idle connection open
# longer (INSTANCE_KEEPALIVE_SECONDS): were it to close one first, nginx could
# send a request on a connection being closed, and a POST it may not retry
# would be answered 502.
UPSTREAM_IDLE_CONNECTIONS = 32
UPSTREAM_KEEPALIVE_SECONDS = 10
INSTANCE_KEEPALIVE_SECONDS = UPSTREAM_KEEPALIVE_SECONDS + 5
# An instance must accept a connection within this; a refused one is tried
# on the next instance at once.
CONNECT_TIMEOUT_SECONDS = 2
# An instance that failed (refused a connection, reset one, timed out) gets
# no requests for this long, then is tried again. Longer than an instance
# takes to restart (serve.edge.launcher restarts one that dies) and load its
# models: a restarted gunicorn accepts connections as soon as its master
# listens, and until its worker has loaded the app they would wait unanswered.
FAILED_INSTANCE_SECONDS = 30
# gunicorn restarts a worker silent this long (a model load, `/admin/reload`,
# takes seconds); nginx waits a little longer for an answer, so the restart,
# not nginx, ends a stuck request.
WORKER_TIMEOUT_SECONDS = 60
ANSWER_TIMEOUT_SECONDS = WORKER_TIMEOUT_SECONDS + 5
# gthread threads per gunicorn worker: one. Predictions are CPU-bound, so a
# second thread in a worker would mostly wait for the GIL, and a thread that
# waits for it between gunicorn's two sends of an answer (head, then body)
# widens the moment in which a killed worker leaves nginx a head without a
# body, which no proxy can retry. Idle kept-alive connections need no thread
# (gthread holds them in its poller). The cost: `/admin/reload` makes the
# worker that takes it load the models before it answers anything else.
# docs/benchmarks.md has the instances x workers x threads measured.
THREADS = 1
# The prediction routes (serve/routes/predictions.py): pure, so nginx may send
# one that failed on an instance to another, POST as it is. No other route
# is sent twice unless it is a GET.
PREDICTION_PATHS = ("/predict", "/predict/batch", "/v1/forecast", "/v1/forecast/batch")
# Every route that takes POST, and only POST; the others take GET (nginx names
# them in the Allow header of the 405 it answers TRACE with).
POST_PATHS = (*PREDICTION_PATHS, "/admin/reload")
# Request ids nginx passes on as given (else it makes one: `$request_id`, 32
# hex digits); the app echoes them and logs them with each prediction.
REQUEST_ID_PATTERN = r"[A-Za-z0-9._:-]{1,64}"


def instance_ports(settings: Settings) -> list[int]:
    """The loopback ports of the API instances: API_INSTANCE_PORT and the next ones."""
    return [settings.api_instance_port + i for i in range(settings.api_instances)]


def workers_per_instance(settings: Settings, cpus: int | None = None) -> int:
    """gunicorn workers of each instance: all instances together, one per core.

    One worker per core because predictions are CPU-bound (threads share a
    core through the GIL); with more instances than cores, one each.
    """
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // settings.api_instances)
