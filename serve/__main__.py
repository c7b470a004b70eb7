"""`python -m serve [--host 127.0.0.1] [--port API_PORT]`: serve the API, foreground.

nginx listens on `--port` in front of API_INSTANCES gunicorn instances
(`python -m serve.instance`) on the loopback ports from API_INSTANCE_PORT;
`serve.edge.launcher` starts, watches and stops them all. Every port is
checked first, so a port held by another process (another checkout's API?)
stops the start with the setting to change named.

The API needs no write access to the warehouse and no Redis login but its
own: started with the writer's credentials or the Redis admin's password in
its environment (`scripts/with-env` exports them all, and so does
`set -a; . .run/stack.env`), it re-executes itself without them first
(`ml.settings.environ_without_writer`), so neither nginx nor any instance
ever holds them (`/proc/<pid>/environ` included).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ml.settings import load_settings
from serve.edge.launcher import Edge
from serve.edge.limits import instance_ports
from serve.instance import refuse_busy_port, scrub_environment


def main(argv: list[str] | None = None) -> None:
    scrub_environment("serve", argv)
    settings = load_settings().for_api()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1",
                        help="address nginx listens on (default %(default)s)")
    parser.add_argument("--port", type=int, default=settings.api_port,
                        help="port nginx listens on (default API_PORT=%(default)s)")
    parser.add_argument("--report", type=Path,
                        help="the analytics report, named in the line that says where things are")
    parser.add_argument("--app", help="module:factory of another WSGI app for the instances "
                        "to serve (the benchmark's reference); default: the API")
    args = parser.parse_args(argv)
    settings = dataclasses.replace(settings, api_port=args.port)
    refuse_busy_port(args.host, args.port, "API_PORT")
    for port in instance_ports(settings):
        refuse_busy_port("127.0.0.1", port, "API_INSTANCE_PORT")
    sys.exit(Edge(settings, args.host, app=args.app, report=args.report).run())


if __name__ == "__main__":
    main()
