"""Fixtures for the double's own tests: a two-DC cluster with one listening agent per DC."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.consul_double import ACLConfig, Clock, ConsulCluster, ListeningAgent
from tests.helpers import poll_until

#: ``poll(predicate)``, for conditions with no event to wait on (the request log).
poll = poll_until


@pytest.fixture
async def cluster() -> AsyncIterator[ConsulCluster]:
    c = ConsulCluster(clock=Clock(speed=1.0), max_wait=5.0)
    c.add_datacenter("dc1", position=0.0)
    c.add_datacenter("dc2", position=0.030)
    c.add_datacenter("dc3", position=0.010)
    await c.add_agent("dc1", "node-a")
    await c.add_agent("dc2", "node-b", address="127.0.0.2")
    yield c
    await c.close()


@pytest.fixture
def agent(cluster: ConsulCluster) -> ListeningAgent:
    return cluster.agent("node-a")


@pytest.fixture
async def http(agent: ListeningAgent) -> AsyncIterator[aiohttp.ClientSession]:
    """The shared ``http`` session, bound to node-a's URL (paths alone in these tests)."""
    async with aiohttp.ClientSession(base_url=agent.url) as s:
        yield s


@pytest.fixture
def acl_cluster(cluster: ConsulCluster) -> ACLConfig:
    """ACLs on (default deny) with a few tokens; returns the config to add more."""
    cluster.acl.enabled = True
    cluster.acl.default_policy = "deny"
    cluster.acl.add_token("root", management=True)
    cluster.acl.add_token(
        "gw", {"service": {"": "read"}, "node": {"": "read"}, "key": {"switchgear/": "read"}}
    )
    cluster.acl.add_token("llm-writer", {"service": {"llm": "write"}, "node": {"": "read"}})
    cluster.acl.add_token(
        "local-gw", {"service": {"": "read"}, "node": {"": "read"}}, local=True, datacenter="dc1"
    )
    return cluster.acl


def parked(cluster: ConsulCluster, path: str) -> bool:
    """A blocking request for ``path`` has reached the double (it parks without yielding first)."""
    return any(p == path and "index" in q for _, _, p, q in cluster.request_log)
