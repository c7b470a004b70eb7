"""`python -m serve.instance --port PORT [--host 127.0.0.1]`: one gunicorn instance of the API.

`python -m serve` starts API_INSTANCES of these behind nginx; docker-compose
runs one per API replica. The gunicorn master runs in this process with the
settings and hooks of `serve/gunicorn_conf.py` (gunicorn's stock gthread
worker; nginx in front reads every request in full first); each worker calls
`serve.app.create_app` with the same `Settings` and the instance directory
`.run/serve/<port>/`, which the workers share (champions file, Prometheus
files) and nobody else touches.

The API needs no write access to the warehouse: started with the writer's
credentials in its environment (`scripts/with-env` exports them all), it
re-executes itself without them first, so neither the master nor its workers
hold them (`/proc/<pid>/environ` included), and it drops the password that
`.run/stack.env` gives (`Settings.for_api`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import sys
from pathlib import Path

from gunicorn.app.base import Application

from ml.settings import Settings, environ_without_writer, load_settings
from serve.edge.limits import workers_per_instance

CONFIG = Path(__file__).with_name("gunicorn_conf.py")


class GunicornServer(Application):
    """Gunicorn configured from gunicorn_conf.py, serving `create_app`
    (or, for the benchmark's reference, the factory `app` names)."""

    def __init__(self, settings: Settings, host: str, port: int, app: str | None = None) -> None:
        self.settings = settings
        self.bind = f"{host}:{port}"
        self.port = port
        self.app_factory = app
        self.instance_dir = settings.run_dir / "serve" / str(port)
        super().__init__()

    def load_config(self) -> None:
        self.load_config_from_module_name_or_filename(str(CONFIG))
        self.cfg.set("bind", [self.bind])
        self.cfg.set("workers", workers_per_instance(self.settings))
        self.cfg.set("raw_env", [
            # Read by prometheus_client when a worker first imports it.
            f"PROMETHEUS_MULTIPROC_DIR={self.instance_dir / 'metrics'}",
            # One worker per core already: numeric libraries must not fan out.
            "OMP_NUM_THREADS=1",
            "OPENBLAS_NUM_THREADS=1",
            # Model loads log to the server log; progress bars only clutter it.
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false",
            # Models load through ml.modeling.champions (verified skops only);
            # MLflow's own loaders, which would unpickle, refuse in the workers.
            "MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false",
        ])
        self.cfg.set("proc_name", f"vgsales-api:{self.port}")

    def load(self):
        if self.app_factory:
            module, _, name = self.app_factory.partition(":")
            return getattr(importlib.import_module(module), name)()
        from serve.app import create_app

        return create_app(self.settings, instance_dir=self.instance_dir)


def refuse_busy_port(host: str, port: int, variable: str) -> None:
    """Exit with a message naming `variable` (the setting that moves the
    port) when `host:port` cannot be bound.

    Checked before gunicorn or nginx starts: gunicorn's own failure is five
    retries of `Connection in use` with no hint of which setting to change.
    """
    with socket.socket() as probe:
        # As gunicorn and nginx bind: a port left in TIME_WAIT is free, a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            sys.exit(
                f"[serve] error: cannot listen on {host}:{port} ({error.strerror}): "
                "another process (another API or checkout?) holds it. Choose a free "
                f"port: {variable}=<port> make serve"
            )


def scrub_environment(module: str, argv: list[str] | None) -> None:
    """Re-execute `python -m module` without the writer's credentials when
    this process holds them (`ml.settings.environ_without_writer`)."""
    scrubbed = environ_without_writer()
    if scrubbed is not None:
        args = sys.argv[1:] if argv is None else argv
        os.execve(sys.executable, [sys.executable, "-m", module, *args], scrubbed)


def main(argv: list[str] | None = None) -> None:
    scrub_environment("serve.instance", argv)
    settings = load_settings().for_api()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, required=True, help="port to bind")
    parser.add_argument("--app", help="module:factory of another WSGI app to serve "
                        "(the benchmark's reference); default: the API")
    args = parser.parse_args(argv)
    refuse_busy_port(args.host, args.port, "API_INSTANCE_PORT")
    GunicornServer(settings, args.host, args.port, args.app).run()


if __name__ == "__main__":
    main()
