"""The federated Consul double: datacenters, agents listening on loopback, the middleware that
gives every reply Consul's error model and headers, and the Python control API.

Typical use in a test::

    cluster = ConsulCluster(clock=Clock(speed=10))
    cluster.add_datacenter("dc1", position=0.0)
    cluster.add_datacenter("dc2", position=0.02)
    agent = await cluster.add_agent("dc1", "gw-node")       # listening on agent.port
    ...
    await cluster.close()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.consul_double import (
    agent_routes,
    catalog_routes,
    control_routes,
    kv_routes,
    query_routes,
    session_routes,
)
from tests.consul_double.acl import ACLConfig
from tests.consul_double.agent import Agent
from tests.consul_double.blocking import Clock
from tests.consul_double.catalog_routes import median_rtt
from tests.consul_double.routing import AGENT
from tests.consul_double.sessions import table_of
from tests.consul_double.state import Datacenter
from tests.consul_double.util import H_DEFAULT_POLICY, ConsulHTTPError, text_error


class ListeningAgent(Agent):
    """An agent with its own aiohttp app on a loopback port that can be stopped and restarted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def listening(self) -> bool:
        return self._runner is not None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start_listener(self) -> None:
        if self._runner is not None:
            return
        app = make_app(self)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            self.port = runner.addresses[0][1]
        self._runner = runner

    async def stop_listener(self) -> None:
        """Connections are refused until :meth:`start_listener` (the agent's state is kept)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def close(self) -> None:
        await self.stop_listener()
        await super().close()


class ConsulCluster:
    """All datacenters of one WAN federation plus the agents tests talk to."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        acl: ACLConfig | None = None,
        sync_delay: float = 0.0,
        max_wait: float | None = None,
        rpc_error_prefix: bool = False,
    ) -> None:
        self.clock = clock or Clock()
        self.acl = acl or ACLConfig()
        self.sync_delay = sync_delay  # agent→catalog hop, real seconds (§5.1)
        self.max_wait = max_wait  # cap on blocking waits, clock seconds (tests shrink it)
        self.rpc_error_prefix = rpc_error_prefix
        self.datacenters: dict[str, Datacenter] = {}
        self.agents: dict[str, ListeningAgent] = {}
        self._inject: list[tuple[int, str]] = []
        # (agent node, method, path, query) of every /v1/ request, for tests about client behaviour
        self.request_log: list[tuple[str, str, str, dict[str, str]]] = []
        self._deferred: set[asyncio.Task[Any]] = set()

    # --- topology -------------------------------------------------------------------------

    def add_datacenter(
        self, name: str, *, position: float | None = 0.0, servers: int = 1
    ) -> Datacenter:
        """``position`` is the one-way latency (s) put in Vec[0]; None means no coordinates."""
        dc = Datacenter(name, position=position, servers=servers)
        self.datacenters[name] = dc
        return dc

    def remove_datacenter(self, name: str) -> None:
        self.datacenters.pop(name, None)

    async def add_agent(
        self,
        dc: str,
        node: str,
        address: str = "127.0.0.1",
        *,
        listen: bool = True,
        default_token: str | None = None,
    ) -> ListeningAgent:
        agent = ListeningAgent(
            self, self.datacenters[dc], node, address, default_token=default_token
        )
        await agent.start()
        if listen:
            await agent.start_listener()
        self.agents[node] = agent
        return agent

    def agent(self, node: str) -> ListeningAgent:
        return self.agents[node]

    def datacenter_order(self, local: str) -> list[str]:
        src = self.datacenters[local]
        names = sorted(self.datacenters)
        return sorted(names, key=lambda n: median_rtt(src, self.datacenters[n]))

    async def close(self) -> None:
        for t in list(self._deferred):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for agent in self.agents.values():
            await agent.close()
        for dc in self.datacenters.values():
            await table_of(dc, self.clock).close()

    def defer(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._deferred.add(task)
        task.add_done_callback(self._deferred.discard)

    # --- control (also under /_double/) -------------------------------------------------

    def set_reachable(self, dc: str, reachable: bool) -> None:
        d = self.datacenters[dc]
        d.reachable = reachable
        d.notify()
        if reachable:
            for agent in self.agents.values():
                if agent.dc is d:
                    agent.schedule_sync()

    def fail_node(self, dc: str, node: str) -> None:
        self.datacenters[dc].set_serf(node, "critical")
        table_of(self.datacenters[dc], self.clock).node_failed(node)  # its sessions go

    def recover_node(self, dc: str, node: str) -> None:
        self.datacenters[dc].set_serf(node, "passing")

    def force_check(self, dc: str, node: str, check_id: str, status: str | None) -> None:
        agent = self.agents[node]
        assert agent.dc is self.datacenters[dc], "node is not in that datacenter"
        agent.force_status(check_id, status)

    def reset_index(self, dc: str, value: int) -> None:
        self.datacenters[dc].reset_index(value)

    def inject_errors(self, count: int, status: int = 500, body: str = "injected failure") -> None:
        """The next ``count`` /v1/ requests to any agent fail with ``status`` and ``body``."""
        self._inject.extend([(status, body)] * count)

    def inject_latency(self, count: int, seconds: float) -> None:
        """The next ``count`` /v1/ requests are answered normally, after ``seconds`` (real time)."""
        self._inject.extend([(0, str(seconds))] * count)

    def take_injected(self) -> tuple[int, str] | None:
        return self._inject.pop(0) if self._inject else None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def consul_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    agent = request.app[AGENT]
    policy = agent.cluster.acl.default_policy if agent.cluster.acl.enabled else "allow"
    resp: web.StreamResponse
    if request.path.startswith("/v1/"):
        agent.cluster.request_log.append(
            (agent.node, request.method, request.path, dict(request.query))
        )
        del agent.cluster.request_log[:-2000]
    try:
        injected = agent.cluster.take_injected() if request.path.startswith("/v1/") else None
        if injected is not None and injected[0] == 0:
            await asyncio.sleep(float(injected[1]))  # injected latency, then a normal answer
            injected = None
        if injected is not None:
            resp = text_error(injected[0], injected[1])
        else:
            resp = await handler(request)
    except ConsulHTTPError as exc:
        resp = text_error(exc.status, exc.text, exc.headers)
    except web.HTTPMethodNotAllowed as exc:
        allow = ", ".join(sorted(exc.allowed_methods | {"OPTIONS"}))
        if request.method == "OPTIONS":
            resp = web.Response(status=200, headers={"Allow": allow})
        else:
            resp = text_error(405, f"method {request.method} not allowed", {"Allow": allow})
    except web.HTTPNotFound:
        resp = text_error(404, "404 page not found")
    resp.headers[H_DEFAULT_POLICY] = policy
    return resp


def make_app(agent: Agent) -> web.Application:
    app = web.Application(middlewares=[consul_middleware])
    app[AGENT] = agent
    for table in (
        agent_routes.routes,
        catalog_routes.routes,
        kv_routes.routes,
        query_routes.routes,
        session_routes.routes,
        control_routes.routes,
    ):
        app.add_routes(table)
    return app
