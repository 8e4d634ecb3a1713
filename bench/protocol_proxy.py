"""A floor prototype, not part of switchgear: a pass-through on ``asyncio.Protocol`` + httptools.

Requests are parsed by llhttp (httptools); each complete POST is sent on a pooled keep-alive
connection to the upstream, whose answer (parsed by httptools too) is relayed to the client
as a chunked body, piece by piece as it arrives. No limits, no timeouts, no pipelining
order guarantees, no error mapping: it only measures what the HTTP layer costs.

    .venv/bin/python bench/protocol_proxy.py PORT UPSTREAM_URL
"""

from __future__ import annotations

import asyncio
import sys
from urllib.parse import urlsplit

import httptools


class Upstream(asyncio.Protocol):
    """One keep-alive connection to the upstream; one exchange at a time."""

    def __init__(self, pool: list[Upstream]) -> None:
        self.pool, self.client, self.transport = pool, None, None  # type: ignore[var-annotated]
        self.parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        ctype = b"text/event-stream" if self.client.stream else b"application/json"  # type: ignore[attr-defined]
        self.client.transport.write(  # type: ignore[attr-defined]
            b"HTTP/1.1 %d OK\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
            % (status, ctype)
        )

    def on_body(self, body: bytes) -> None:
        self.client.transport.write(b"%x\r\n%s\r\n" % (len(body), body))  # type: ignore[attr-defined]

    def on_message_complete(self) -> None:
        self.client.transport.write(b"0\r\n\r\n")  # type: ignore[attr-defined]
        self.client = None
        self.pool.append(self)


class Client(asyncio.Protocol):
    def __init__(self, proxy: Proxy) -> None:
        self.proxy, self.body, self.url = proxy, bytearray(), b""
        self.parser = httptools.HttpRequestParser(self)
        self.stream = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        body, self.body = bytes(self.body), bytearray()
        self.stream = b'"stream":true' in body
        asyncio.ensure_future(self.proxy.forward(self, self.url, body))


class Proxy:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port, self.pool = host, port, list[Upstream]()

    async def forward(self, client: Client, url: bytes, body: bytes) -> None:
        if self.pool:
            up = self.pool.pop()
        else:
            loop = asyncio.get_running_loop()
            _, up = await loop.create_connection(lambda: Upstream(self.pool), self.host, self.port)
        up.client = client  # type: ignore[assignment]
        up.transport.write(  # type: ignore[attr-defined]
            b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (url, self.host.encode(), len(body), body)
        )


def main() -> None:
    port, upstream = int(sys.argv[1]), urlsplit(sys.argv[2])
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    proxy = Proxy(upstream.hostname or "127.0.0.1", upstream.port or 80)
    server = loop.run_until_complete(
        loop.create_server(lambda: Client(proxy), "127.0.0.1", port, backlog=1024)
    )
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()
