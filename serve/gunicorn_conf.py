"""Gunicorn settings and hooks for the API, read by `python -m serve`.

Sized for a CPU-bound service: one worker per core, each with a few threads
(gthread) so keep-alive connections are held open while a request computes
and `/admin/reload` can load models without blocking the worker's other
requests. `preload_app` stays off: every worker builds its own app after the
fork, so no MLflow/SQLite/Redis connection is ever shared across a fork (the
reload design in serve/state.py does not need preloading either).

The hooks own the instance directory (`.run/serve/<port>/`, see
`serve.__main__`): emptied when the master starts, so the first worker
resolves the champions afresh and Prometheus counts from zero; cleaned of
dead workers' gauges; removed when the master exits.
"""

from __future__ import annotations

import multiprocessing
import shutil

workers = multiprocessing.cpu_count()
worker_class = "gthread"
threads = 4
# Loading a model (and `/admin/reload`) takes seconds; predictions take ms.
timeout = 60
graceful_timeout = 30
keepalive = 15
# Restart workers now and then (jittered, so not all at once) to bound leaks.
max_requests = 20_000
max_requests_jitter = 2_000
backlog = 2048
# No gunicornc control socket: unused, and one fixed path per user would
# collide between instances (tests run their own).
control_socket_disable = True
errorlog = "-"
loglevel = "info"


def on_starting(server) -> None:
    instance = server.app.instance_dir
    shutil.rmtree(instance, ignore_errors=True)
    (instance / "metrics").mkdir(parents=True)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(server.app.instance_dir / "metrics"))


def on_exit(server) -> None:
    shutil.rmtree(server.app.instance_dir, ignore_errors=True)
