"""Limits of the listening side: a connection cap and header, body and idle timeouts.

aiohttp bounds neither the number of connections nor how long a client may take to send
its request, so one client holding thousands of idle or slowloris sockets would exhaust the
process's descriptors. :class:`EdgeGuard` wraps every connection's protocol (the aiohttp
request handler) before aiohttp sees it:

* at ``edge.max_connections`` the longest-idle connection (no request in progress) is closed
  to admit the new one, so a flood of idle sockets cannot lock other clients out; only when
  every connection is busy is the new one answered 503 and closed. Both are logged, at most
  once per :data:`LOG_EVERY_S`;
* a connection must deliver its request headers within ``edge.header_timeout`` (from the
  connection's start, or from the first byte of a later request on it) and the body within
  ``edge.body_timeout`` after the headers; else it gets a 408 and is closed;
* an idle kept-alive connection is closed by aiohttp after ``edge.keepalive_timeout``.

Requests are framed here only as far as the timeouts need (``Content-Length`` or chunked);
the parsing proper stays aiohttp's. When the framing is unclear (an upgrade, oversized
headers) the connection is left to aiohttp's own limits.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import resource
import time
from collections import OrderedDict
from typing import Any

import orjson
from aiohttp import web

from switchgear.errors import APIError

log = logging.getLogger("switchgear.proxy.edge")

LOG_EVERY_S = 10.0
EVICT_SCAN = 1024  # connections looked at for an idle one to close, oldest first
MAX_HEAD_BYTES = 64 * 1024  # aiohttp refuses much less (8 KiB lines); past this we stop framing
HEAD, BODY, CHUNKED, BUSY, OFF = "head", "body", "chunked", "busy", "off"


def _raw_error(exc: APIError) -> bytes:
    """A complete HTTP/1.1 error response, for connections aiohttp never got to answer."""
    body = orjson.dumps(exc.body())
    head = (
        f"HTTP/1.1 {exc.status} {exc.code}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class EdgeGuard:
    """The connections of one listening process, and the limits they are held to."""

    def __init__(
        self,
        *,
        max_connections: int,
        header_timeout: float,
        body_timeout: float,
    ) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.conns: OrderedDict[GuardedProtocol, None] = OrderedDict()  # oldest activity first
        self.evicted = self.refused = self.header_timeouts = self.body_timeouts = 0
        self._logged_at = 0.0
        self._logged = (0, 0)

    def factory(self, make_handler: Any) -> Any:
        """A protocol factory for ``loop.create_server`` around aiohttp's ``make_handler``."""
        return lambda: GuardedProtocol(self, make_handler)

    # --- admission ----------------------------------------------------------------------

    def admit(self, conn: GuardedProtocol) -> bool:
        if len(self.conns) >= self.max_connections and not self._evict_one():
            self.refused += 1
            self._log_cap()
            return False
        self.conns[conn] = None
        return True

    def _evict_one(self) -> bool:
        # The oldest activity comes first; busy connections (streams a client only reads)
        # gather there too, so the scan is bounded rather than walking every connection.
        for conn in itertools.islice(self.conns, EVICT_SCAN):
            if conn.idle():
                conn.close_now()
                self.evicted += 1
                self._log_cap()
                return True
        return False

    def _log_cap(self) -> None:
        now = time.monotonic()
        if now - self._logged_at < LOG_EVERY_S:
            return
        ev, rf = self.evicted - self._logged[0], self.refused - self._logged[1]
        self._logged_at, self._logged = now, (self.evicted, self.refused)
        log.warning(
            "connection cap reached (edge.max_connections=%d): %d idle connection(s) closed "
            "and %d new one(s) refused since the last report",
            self.max_connections,
            ev,
            rf,
        )

    def touch(self, conn: GuardedProtocol) -> None:
        if conn in self.conns:
            self.conns.move_to_end(conn)

    def release(self, conn: GuardedProtocol) -> None:
        self.conns.pop(conn, None)


class GuardedProtocol(asyncio.Protocol):
    """Forwards everything to aiohttp's request handler, timing each request's arrival."""

    def __init__(self, guard: EdgeGuard, make_handler: Any) -> None:
        self.guard = guard
        self._make_handler = make_handler
        self.inner: Any = None
        self.transport: asyncio.Transport | None = None
        self.phase = HEAD
        self._head = bytearray()
        self._remaining = 0
        self._tail = b""
        self._timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.guard.admit(self):
            transport.write(  # type: ignore[attr-defined]
                _raw_error(
                    APIError(
                        "the gateway is at its connection limit; retry later",
                        status=503,
                        code="too_many_connections",
                    )
                )
            )
            transport.close()
            return
        self.inner = self._make_handler()
        self.inner.connection_made(transport)
        self._arm(self.guard.header_timeout, "header")

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        self.guard.touch(self)
        self.inner.data_received(data)
        if self.phase != OFF:
            self._frame(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self.guard.release(self)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # --- state ------------------------------------------------------------------------------

    def idle(self) -> bool:
        """No request in progress: waiting for headers, or kept alive between requests."""
        if self.phase == HEAD:
            return True
        if self.phase == BUSY:
            return not getattr(self.inner, "_request_in_progress", True)
        return False

    def close_now(self) -> None:
        self._cancel()
        self.guard.release(self)
        if self.transport is not None:
            self.transport.close()

    def _arm(self, seconds: float, what: str) -> None:
        self._cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(seconds, self._expired, what)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, what: str) -> None:
        self._timer = None
        if what == "body" and self._body_complete():
            self._request_done()  # framing missed the end; aiohttp has the whole body
            return
        if what == "header":
            self.guard.header_timeouts += 1
            limit = self.guard.header_timeout
        else:
            self.guard.body_timeouts += 1
            limit = self.guard.body_timeout
        log.debug("closing %s: request %s not received within %.1fs", self._peer(), what, limit)
        if self.transport is not None and not self.transport.is_closing():
            err = APIError(
                f"request {what} not received within {limit:g}s",
                status=408,
                code="request_timeout",
            )
            err.type = "invalid_request_error"
            self.transport.write(_raw_error(err))
        self.close_now()

    def _body_complete(self) -> bool:
        request = getattr(self.inner, "_current_request", None)
        content = getattr(request, "content", None)
        return content is not None and content.is_eof()

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"{peer[0]}:{peer[1]}" if peer else "a client"

    # --- request framing ---------------------------------------------------------------------

    def _request_done(self) -> None:
        self._cancel()
        self.phase = BUSY

    def _frame(self, data: bytes) -> None:
        """Follow the requests in ``data``.

        A request's header (or body) timer is armed only when this read leaves its head
        (or body) incomplete: a request that arrives whole costs no timer.
        """
        view = memoryview(data)
        new_head = False
        while view.nbytes and self.phase != OFF:
            if self.phase == BUSY:  # the first byte of the next request
                self.phase = HEAD
                new_head = True
            if self.phase == HEAD:
                view = self._frame_head(view)
            elif self.phase == BODY:
                n = min(self._remaining, view.nbytes)
                self._remaining -= n
                view = view[n:]
                if self._remaining == 0:
                    self._request_done()
            else:  # CHUNKED: the body ends with a zero-size chunk and an empty line
                joined = self._tail + bytes(view)
                end = joined.find(b"\r\n0\r\n\r\n")
                if end < 0:
                    self._tail = joined[-6:]
                    return
                self._request_done()
                view = memoryview(joined[end + 7 :])
        if new_head and self.phase == HEAD and self._timer is None:
            self._arm(self.guard.header_timeout, "header")

    def _frame_head(self, view: memoryview) -> memoryview:
        start = max(0, len(self._head) - 3)
        self._head += view
        end = self._head.find(b"\r\n\r\n", start)
        if end < 0:
            if len(self._head) > MAX_HEAD_BYTES:
                self._cancel()
                self.phase = OFF
            return view[view.nbytes :]
        head, rest = bytes(self._head[:end]).lower(), bytes(self._head[end + 4 :])
        self._head.clear()
        length, chunked = 0, False
        if b"transfer-encoding" not in head and b"upgrade" not in head:
            # The usual head: only Content-Length matters, found without a loop over lines.
            at = head.find(b"\r\ncontent-length:")
            if at >= 0 and head.count(b"content-length") == 1:
                value_end = head.find(b"\r\n", at + 17)
                value = head[at + 17 : value_end if value_end >= 0 else len(head)].strip()
                length = int(value) if value.isdigit() else 0
                return self._framed(rest, length)
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip(), value.strip()
            if name == b"content-length" and value.isdigit():
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                chunked = True
            elif name == b"upgrade":
                self._cancel()
                self.phase = OFF
                return view[view.nbytes :]
        if chunked:
            self.phase, self._tail = CHUNKED, b"\r\n"  # so a body of just "0\r\n\r\n" matches
            self._arm(self.guard.body_timeout, "body")
            return memoryview(rest)
        return self._framed(rest, length)

    def _framed(self, rest: bytes, length: int) -> memoryview:
        """After a head announcing a body of ``length`` bytes (0: none): what follows it."""
        if length:
            self.phase, self._remaining = BODY, length
            if len(rest) < length:  # the rest of the body is still to come
                self._arm(self.guard.body_timeout, "body")
        else:
            self._request_done()
        return memoryview(rest)


class EdgeSite(web.TCPSite):
    """A TCPSite whose connections pass through an :class:`EdgeGuard`.

    ``TCPSite.start`` hands aiohttp's handler factory straight to ``create_server``; this
    one hands it the guard's factory around it, with the same socket options.
    """

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, *, guard: EdgeGuard, **kw: Any
    ) -> None:
        super().__init__(runner, host, port, **kw)
        self.guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.guard.factory(server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


def raise_nofile_limit(wanted: int) -> int:
    """Raise the soft descriptor limit towards ``wanted`` (up to the hard limit); the result."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft < wanted:
        log.warning(
            "descriptor limit %d is below edge.max_connections + headroom (%d): raise the "
            "hard limit (ulimit -n) or lower edge.max_connections",
            soft,
            wanted,
        )
    return soft
