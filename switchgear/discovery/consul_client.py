"""The py-consul asyncio client as switchgear uses it, the errors it can raise, and the
retry helpers of the watch loops (backoff with jitter, a token bucket).

Everything Consul-specific goes through documented py-consul calls; the only addition is a
callback wrapper that notices ``X-Consul-Results-Filtered-By-ACLs`` (py-consul drops headers).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import consul
import consul.aio

from switchgear.errors import SwitchgearError
from switchgear.settings.consul import ConsulSettings, seconds

log = logging.getLogger("switchgear.discovery.consul")

FILTERED_HEADER = "X-Consul-Results-Filtered-By-ACLs"


class ConsulError(SwitchgearError):
    """Consul answered in a way discovery or registration cannot work with."""


class ConsulACLError(ConsulError):
    """The ACL token was rejected or lacks a permission; the message says which and what to grant."""


class ErrorKind(enum.Enum):
    ACL = "acl"
    NO_PATH = "no_path"  # unknown DC: configuration, retried slowly
    DC_UNREACHABLE = "dc_unreachable"  # known DC without a reachable server: transient
    UNAVAILABLE = "unavailable"  # the local agent cannot be reached or failed
    OTHER = "other"


def classify(exc: BaseException) -> ErrorKind:
    """Match on substrings, never whole bodies: servers may prefix ``rpc error: ...``."""
    if isinstance(exc, consul.ACLPermissionDenied):
        return ErrorKind.ACL
    text = str(exc)
    if "No path to datacenter" in text:
        return ErrorKind.NO_PATH
    if "Remote DC has no server currently reachable" in text:
        return ErrorKind.DC_UNREACHABLE
    if isinstance(
        exc, aiohttp.ClientError | OSError | TimeoutError | consul.ConsulException | consul.Timeout
    ):
        return ErrorKind.UNAVAILABLE
    return ErrorKind.OTHER


def acl_message(exc: BaseException, what: str) -> str:
    body = str(exc).strip() or "Permission denied"
    if "ACL not found" in body:
        hint = "the token is unknown to Consul (wrong, expired or deleted); check consul.token / CONSUL_HTTP_TOKEN"
    else:
        hint = "grant the token the permission named above"
    return f"Consul refused {what}: {body} ({hint})"


class _HTTPClient(consul.aio.HTTPClient):  # type: ignore[misc]  # py-consul has no type hints
    async def _request(
        self,
        callback: Any,
        method: str,
        uri: str,
        headers: Any,
        data: Any = None,
        connections_timeout: Any = None,
        raw: bool = False,
    ) -> Any:
        def noting(response: Any) -> Any:
            if response.headers.get(FILTERED_HEADER):
                log.warning(
                    "Consul hid results the ACL token may not read (%s %s); "
                    "grant service:read and node:read for complete discovery",
                    method,
                    uri.split("?")[0],
                )
            return callback(response)

        return await super()._request(noting, method, uri, headers, data, connections_timeout, raw)


class Client(consul.aio.Consul):  # type: ignore[misc]  # py-consul has no type hints
    """``consul.aio.Consul`` whose HTTP layer logs ACL-filtered results."""

    def http_connect(
        self, host: str, port: int, scheme: Any, verify: bool | str = True, cert: Any = None
    ) -> Any:
        return _HTTPClient(
            host,
            port,
            scheme,
            loop=self.loop,
            connections_limit=self.connections_limit,
            connections_timeout=self.connections_timeout,
            verify=verify,
            cert=cert,
        )


def make_client(settings: ConsulSettings, *, token: str | None = None) -> Client:
    """Build the client inside a running loop. Its timeout exceeds wait × 17/16 plus slack (§3.3).

    The token is passed explicitly per call as well, because py-consul lets
    ``CONSUL_HTTP_TOKEN`` silently override ``token=`` on the constructor.
    """
    timeout = seconds(settings.wait) * 17 / 16 + 5.0
    return Client(
        host=settings.host,
        port=settings.port,
        scheme=settings.scheme,
        token=token if token is not None else settings.token,
        connections_timeout=timeout,
    )


class Backoff:
    """Exponential backoff with full jitter, reset after a success."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum
        self.attempt = 0

    def reset(self) -> None:
        self.attempt = 0

    def next_delay(self, *, slow: bool = False) -> float:
        if slow:
            return self.maximum * random.uniform(0.5, 1.0)
        cap = min(self.maximum, self.initial * (2**self.attempt))
        self.attempt += 1
        return random.uniform(cap / 2, cap)


class TokenBucket:
    """Burst of ``burst`` requests, then ``rate`` per second: a flapping value degrades into
    polling instead of a hot loop, without a fixed sleep in the happy path (§3.3)."""

    def __init__(self, burst: int, rate: float) -> None:
        self.capacity, self.rate = float(burst), rate
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    async def take(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            await asyncio.sleep((1 - self.tokens) / self.rate)
            self.tokens = 1.0
            self.stamp = time.monotonic()
        self.tokens -= 1


async def blocking_watch(
    settings: ConsulSettings,
    fetch: Callable[[str | None], Awaitable[tuple[Any, Any]]],
    on_data: Callable[[Any], None],
    on_error: Callable[[Exception, ErrorKind], None],
) -> None:
    """Run one blocking query forever (until cancelled), per the contract's §3.

    ``fetch(index)`` is a py-consul call returning ``(index, data)``; ``index`` is None for a
    non-blocking read. The returned index is echoed back, reset to 0 when it goes backwards
    or after an error (the next read then answers at once), and never sent below 1. Requests
    go through a token bucket; errors back off with jitter, slowly for configuration errors
    (unknown datacenter, ACL). ``on_data`` also runs on a wake-up without change: callers
    compare payloads.
    """
    index = 0
    backoff = Backoff(settings.backoff_initial, settings.backoff_max)
    bucket = TokenBucket(settings.watch_burst, settings.watch_rate)
    while True:
        await bucket.take()
        try:
            new_index, data = await fetch(str(index) if index else None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            kind = classify(exc)
            index = 0
            on_error(exc, kind)
            await asyncio.sleep(backoff.next_delay(slow=kind in (ErrorKind.NO_PATH, ErrorKind.ACL)))
            continue
        backoff.reset()
        got = int(new_index or 0)
        index = 0 if got < index else max(got, 1)
        on_data(data)
