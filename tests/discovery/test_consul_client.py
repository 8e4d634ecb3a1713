"""Error classification and the retry helpers of the watch loops."""

from __future__ import annotations

import aiohttp
import consul
import pytest

from switchgear.discovery.consul_client import (
    Backoff,
    ErrorKind,
    TokenBucket,
    acl_message,
    classify,
)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (consul.ACLPermissionDenied("ACL not found"), ErrorKind.ACL),
        (consul.ConsulException("500 rpc error: No path to datacenter"), ErrorKind.NO_PATH),
        (
            consul.ConsulException("500 Remote DC has no server currently reachable"),
            ErrorKind.DC_UNREACHABLE,
        ),
        (consul.ConsulException("500 leadership lost"), ErrorKind.UNAVAILABLE),
        (aiohttp.ServerDisconnectedError(), ErrorKind.UNAVAILABLE),
        (TimeoutError(), ErrorKind.UNAVAILABLE),
        (ValueError("x"), ErrorKind.OTHER),
    ],
)
def test_classify(exc, kind):
    assert classify(exc) is kind


def test_acl_message_names_the_cause():
    assert "unknown to Consul" in acl_message(
        consul.ACLPermissionDenied("ACL not found"), "reading"
    )
    msg = acl_message(
        consul.ACLPermissionDenied("Permission denied: ... 'service:read' on \"llm\""), "reading"
    )
    assert "service:read" in msg and "grant" in msg


def test_backoff_grows_with_jitter_and_resets():
    b = Backoff(0.1, 1.0)
    delays = [b.next_delay() for _ in range(8)]
    assert 0.05 <= delays[0] <= 0.1 and max(delays) <= 1.0 and delays[-1] >= 0.5
    b.reset()
    assert b.next_delay() <= 0.1
    assert 0.5 <= b.next_delay(slow=True) <= 1.0


async def test_token_bucket_allows_a_burst_then_limits():
    import asyncio

    bucket = TokenBucket(burst=3, rate=50.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(3):
        await bucket.take()
    assert loop.time() - start < 0.01  # the burst is free: no sleep in the happy path
    await bucket.take()
    assert loop.time() - start >= 0.015  # then about one token per 1/rate seconds
