"""The gunicorn worker class: gthread, with requests read in full before a thread is used.

gunicorn's gthread worker hands a connection to a pool thread as soon as it
is accepted (or as a kept-alive one turns readable); the thread then reads
the request with blocking calls. A client that sends a request slowly (a
byte now and then, or a body that never ends) holds that thread for as
long as it likes, and a few dozen such clients hold every thread of every
worker: the whole API stalls.

This worker keeps reading in the event loop instead, without blocking: a
connection reaches a thread only once its request has arrived in full (the
headers, then the body its Content-Length or chunked framing announces, or
enough of it to refuse it as too large). A request must arrive within
`ARRIVAL_SECONDS`, or the connection is answered 408 and closed. Slow
clients then cost a socket and a buffer each, not a thread. The threads'
own socket operations (sending an answer, draining a body) time out after
`SOCKET_SECONDS`, so a client that stops reading cannot hold one either.

Why here and not elsewhere: a buffering proxy (nginx) in front would do the
same but adds a service to run and configure on every machine; an async
worker (gevent) would change how the CPU-bound model code is scheduled.
The bounds live in this one place, next to the worker they change.

gunicorn's own errors (a malformed request line, headers too large) are
written by `gunicorn.util.write_error` as HTML; in this worker's processes it
writes the API's JSON error shape instead (`json_error`).
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import time
from functools import partial

import orjson
from gunicorn import util
from gunicorn.workers.gthread import TConn, ThreadWorker

from serve.schemas import MAX_BODY_BYTES

ARRIVAL_SECONDS = 10.0
SOCKET_SECONDS = 10.0
# Request line and headers: gunicorn's own limits (limit_request_line,
# limit_request_fields x limit_request_field_size) answer beyond this.
MAX_HEAD_BYTES = 64 * 1024
READ_CHUNK = 64 * 1024


class TimedSocket(socket.socket):
    """A socket whose blocking mode still times out.

    gunicorn's threads switch a connection to blocking mode
    (`setblocking(True)`, which removes any timeout) before reading and
    writing; here blocking means waiting at most `SOCKET_SECONDS`.
    """

    def setblocking(self, flag: bool) -> None:
        self.settimeout(SOCKET_SECONDS if flag else 0.0)


def request_complete(data: bytes) -> bool:
    """Whether `data` holds a whole request, or enough to answer it anyway
    (a head or body over the limits, framing gunicorn will refuse)."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return len(data) > MAX_HEAD_BYTES
    body = memoryview(data)[head_end + 4:]
    length, chunked = None, False
    for line in data[:head_end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return True
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    if chunked:
        return len(body) > MAX_BODY_BYTES or _chunks_complete(body)
    if length is None:
        return True
    return length > MAX_BODY_BYTES or len(body) >= length


def expects_continue(data: bytes) -> bool:
    """Whether the head in `data` is complete and asks for `100 Continue`
    before its body is sent (curl does for bodies over 1 KiB)."""
    head_end = data.find(b"\r\n\r\n")
    return head_end >= 0 and b"\r\nexpect: 100-continue" in data[:head_end].lower()


def _chunks_complete(body: memoryview) -> bool:
    position = 0
    while True:
        line_end = bytes(body[position:position + 32]).find(b"\r\n")
        if line_end < 0:
            return len(body) - position > 32  # a size line that long is refused
        size_text = bytes(body[position:position + line_end]).split(b";")[0]
        try:
            size = int(size_text, 16)
        except ValueError:
            return True
        position += line_end + 2
        if size == 0:
            return bytes(body[position:]).find(b"\r\n") >= 0  # end of trailers
        position += size + 2
        if position > len(body):
            return False


def json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """`gunicorn.util.write_error` in the API's error shape."""
    body = orjson.dumps({
        "error": reason.lower().replace(" ", "_"),
        "message": mesg or reason,
        "detail": [],
        "request_id": None,
    })
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin1") + body)


class BufferingThreadWorker(ThreadWorker):
    """gthread, but a thread only ever gets a request that has fully arrived."""

    def init_process(self) -> None:
        # The only writer of gunicorn's own error pages, in this process only.
        util.write_error = json_error
        self.arriving: dict[object, tuple[float, bytearray]] = {}
        super().init_process()

    def accept(self, listener) -> None:
        try:
            client, address = listener.accept()
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        client = TimedSocket(client.family, client.type, client.proto, fileno=client.detach())
        self._start_arrival(TConn(self.cfg, client, address, listener.getsockname()))

    def on_client_socket_readable(self, conn, client) -> None:
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._start_arrival(conn)

    def _start_arrival(self, conn) -> None:
        conn.sock.setblocking(False)
        self.arriving[conn] = (time.monotonic() + ARRIVAL_SECONDS, bytearray())
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._read_some, conn))

    def _read_some(self, conn, client) -> None:
        _, data = self.arriving[conn]
        try:
            chunk = client.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(conn)
            return
        data += chunk
        received = bytes(data)
        if not request_complete(received):
            # Asked here, the client would wait for gunicorn's answer forever;
            # gunicorn's own (later) one is a second interim answer, which
            # clients must accept (RFC 9110 section 15.2).
            if not getattr(conn, "continued", False) and expects_continue(received):
                conn.continued = True
                try:
                    util.write_nonblock(client, b"HTTP/1.1 100 Continue\r\n\r\n")
                except OSError:
                    self._drop(conn)
        else:
            conn.continued = False
            self.poller.unregister(client)
            del self.arriving[conn]
            conn.data_ready = True
            conn.arrived = bytes(data)
            self.enqueue_req(conn)

    def handle(self, conn):
        arrived = getattr(conn, "arrived", b"")
        if arrived:
            conn.arrived = b""
            conn.sock.setblocking(True)
            conn.init()
            unreader = conn.parser.unreader
            unreader.buf.seek(0, os.SEEK_END)
            unreader.buf.write(arrived)
        return super().handle(conn)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        for conn, (deadline, data) in list(self.arriving.items()):
            if deadline <= now:
                if data:
                    try:
                        json_error(conn.sock, 408, "Request Timeout",
                                   f"the request did not arrive within {ARRIVAL_SECONDS:g} s")
                    except OSError:
                        pass  # the client is gone or not reading: closed below
                self._drop(conn)

    def _drop(self, conn) -> None:
        self.arriving.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        self.nr_conns -= 1
        conn.close()
