"""Request plumbing shared by the route modules: which agent answers, ``?dc=`` federation
(§12), ACL resolution (§11) and the index headers of blocking endpoints (§2.5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from tests.consul_double.acl import Authz, authorize
from tests.consul_double.util import (
    H_CONSISTENCY,
    H_INDEX,
    H_KNOWN_LEADER,
    H_LAST_CONTACT,
    ConsulHTTPError,
)

if TYPE_CHECKING:
    from tests.consul_double.agent import Agent
    from tests.consul_double.server import ConsulCluster
    from tests.consul_double.state import Datacenter

AGENT: web.AppKey[Agent] = web.AppKey("consul_double_agent")

NO_PATH = "No path to datacenter"
NO_SERVER = "Remote DC has no server currently reachable"


@dataclass(slots=True)
class Target:
    agent: Agent
    cluster: ConsulCluster
    dc: Datacenter
    authz: Authz


def agent_of(request: web.Request) -> Agent:
    return request.app[AGENT]


def index_headers(idx: int, consistency: str | None = "leader") -> dict[str, str]:
    headers = {H_INDEX: str(max(idx, 1)), H_KNOWN_LEADER: "true", H_LAST_CONTACT: "0"}
    if consistency:
        headers[H_CONSISTENCY] = consistency
    return headers


def _prefix(cluster: ConsulCluster, text: str) -> str:
    return f"rpc error making call: {text}" if cluster.rpc_error_prefix else text


def resolve(request: web.Request, *, honour_dc: bool = True) -> Target:
    """The DC that answers this request (the agent's own unless ``?dc=``), and the caller's rights.

    Agent-local routes pass ``honour_dc=False``: they are answered by the agent itself, so they
    work even while its datacenter's servers are unreachable.
    """
    agent = agent_of(request)
    cluster = agent.cluster
    name = request.query.get("dc") or agent.dc.name if honour_dc else agent.dc.name
    dc = cluster.datacenters.get(name)
    if dc is None:
        raise ConsulHTTPError(
            500,
            _prefix(cluster, NO_PATH),
            {H_INDEX: "1", H_KNOWN_LEADER: "false", H_LAST_CONTACT: "0"},
        )
    if honour_dc and not dc.reachable:
        text = NO_SERVER if dc is not agent.dc else "No known Consul servers"
        raise ConsulHTTPError(
            500,
            _prefix(cluster, text),
            {H_INDEX: "1", H_KNOWN_LEADER: "false", H_LAST_CONTACT: "0"},
        )
    authz = authorize(cluster.acl, request, agent_default=agent.default_token, target_dc=dc.name)
    return Target(agent, cluster, dc, authz)
