"""nginx's configuration, rendered from the settings and `serve.edge.limits`.

`render` fills `nginx.conf.j2`; `command` is how nginx runs it: in the
foreground (its master a child of whoever starts it), with every path it
writes (pid, temporary files) under the prefix, `.run/edge/<API_PORT>/`
locally. Its error log goes to stderr, from the first line (`-e`, before
the configuration is read).

`python -m serve.edge.nginx --listen HOST:PORT --upstream HOST:PORT ...`
writes the configuration for the given instances and execs nginx: what
docker-compose's `nginx` service runs in front of its API replicas.
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import pwd
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from werkzeug.exceptions import default_exceptions
from werkzeug.http import HTTP_STATUS_CODES

from ml.settings import Settings, load_settings
from serve.edge import limits

TEMPLATE = "nginx.conf.j2"
# One worker: predictions are the CPU work; nginx's share is small
# (docs/benchmarks.md).
NGINX_WORKERS = 1


@dataclass(frozen=True)
class EdgeError:
    """One refusal nginx answers itself, in the API's error shape."""

    nginx_status: int  # what nginx calls it (494: a head over its buffers)
    status: int  # what the client gets
    message: str
    field: str | None = None  # the detail's field, as the API names it
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def location(self) -> str:
        """The internal location that answers it (error_page needs a URI: a
        named location cannot answer a request whose request line failed)."""
        return f"_edge/{self.nginx_status}"

    @property
    def body(self) -> str:
        """The JSON body, compact as the app writes it, with nginx's request
        id filled in when sent."""
        detail = [{"field": self.field, "message": self.message}] if self.field else []
        text = json.dumps({
            # As serve/errors.py names Werkzeug's errors.
            "error": HTTP_STATUS_CODES[self.status].lower().replace(" ", "_"),
            "message": self.message, "detail": detail, "request_id": "REQUEST_ID",
        }, separators=(",", ":"))
        if "'" in text or "$" in text:
            raise ValueError(f"an nginx error body cannot hold ' or $: {text}")
        return text.replace("REQUEST_ID", "$api_request_id")


def _as_the_app_answers(status: int) -> str:
    """Werkzeug's message for `status`: what the app answers when it refuses
    the same way, so a client gets one answer whichever layer refused."""
    return default_exceptions[status].description


ERRORS = (
    EdgeError(400, 400, "malformed request: the request line, a header or the body "
              "framing is not valid HTTP/1.1"),
    EdgeError(404, 404, "no such route"),
    # nginx refuses TRACE itself, before any location: Allow (RFC 9110) from
    # the routes' methods.
    EdgeError(405, 405, _as_the_app_answers(405), headers=(("Allow", "$api_allow"),)),
    EdgeError(408, 408, f"the request did not arrive within {limits.CLIENT_TIMEOUT_SECONDS} s"),
    EdgeError(413, 413, _as_the_app_answers(413), "body"),
    EdgeError(414, 414, f"the request line is over {limits.HEAD_BUFFER_BYTES} bytes"),
    EdgeError(494, 431, f"a header is over {limits.HEAD_BUFFER_BYTES} bytes, or all "
              f"together over {limits.HEAD_BUFFERS * limits.HEAD_BUFFER_BYTES}"),
    EdgeError(500, 500, "internal error at the proxy; see its log"),
    EdgeError(501, 501, "unsupported Transfer-Encoding: only chunked is understood"),
    EdgeError(502, 502, "no API instance answered; try again shortly"),
    EdgeError(503, 503, f"over {limits.MAX_REQUESTS_PER_CLIENT} requests in progress "
              "from this address"),
    EdgeError(504, 504, "the API instance did not answer in time"),
    EdgeError(505, 505, "only HTTP/1.0 and HTTP/1.1 are served"),
)


def render(listen: str, upstreams: list[tuple[str, int]], prefix: Path) -> str:
    """The configuration: nginx on `listen` (host:port) in front of `upstreams`."""
    environment = Environment(
        loader=FileSystemLoader(Path(__file__).parent), undefined=StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    user = group = None
    if os.geteuid() == 0:
        user, group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name
    # Each proxied request holds a client and an instance connection.
    worker_connections = 2 * limits.MAX_CONNECTIONS
    return environment.get_template(TEMPLATE).render(
        listen=listen, upstreams=upstreams, prefix=prefix, user=user, group=group,
        nginx_workers=NGINX_WORKERS, worker_connections=worker_connections,
        rlimit_nofile=worker_connections + 64, errors=ERRORS,
        **{name.lower(): value for name, value in vars(limits).items() if name.isupper()},
    )


def prefix_of(settings: Settings) -> Path:
    """nginx's folder for the API on `settings.api_port`: config, pid, temporary files."""
    return settings.run_dir / "edge" / str(settings.api_port)


def write_config(listen: str, upstreams: list[tuple[str, int]], prefix: Path) -> Path:
    """Render the configuration into `prefix`/nginx.conf; return its path."""
    (prefix / "temp").mkdir(parents=True, exist_ok=True)
    path = prefix / "nginx.conf"
    path.write_text(render(listen, upstreams, prefix))
    return path


def executable() -> str:
    """nginx's path (Debian installs it in /usr/sbin, not always on PATH)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise SystemExit("[serve] error: nginx is not installed: scripts/stack.sh up installs "
                         "it (as root), or: sudo apt-get install -y nginx")
    return found


def command(config: Path) -> list[str]:
    """The command line that runs nginx on `config` (from `write_config`)."""
    return [executable(), "-e", "stderr", "-p", str(config.parent), "-c", str(config)]


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, found {text!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=_address, required=True, help="HOST:PORT to listen on")
    parser.add_argument("--upstream", type=_address, action="append", required=True,
                        help="HOST:PORT of an API instance (once per instance)")
    args = parser.parse_args(argv)
    settings = load_settings()
    host, port = args.listen
    prefix = settings.run_dir / "edge" / str(port)
    config = write_config(f"{host}:{port}", args.upstream, prefix)
    argv_nginx = command(config)
    sys.stdout.flush()
    os.execv(argv_nginx[0], argv_nginx)


if __name__ == "__main__":
    main()
