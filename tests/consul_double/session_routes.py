"""``/v1/session/create|renew|destroy|info`` (Consul's session HTTP API reference); the state
and the lock rules are in :mod:`tests.consul_double.sessions`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.consul_double.blocking import run_blocking
from tests.consul_double.routing import index_headers, resolve
from tests.consul_double.sessions import TTL_MAX, Session, new_session, table_of
from tests.consul_double.util import (
    ConsulHTTPError,
    DurationError,
    Fields,
    bad_request,
    check_consistency,
    json_response,
    parse_duration,
    read_json,
)

routes = web.RouteTableDef()


def _go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String`` for whole seconds (``10s``, ``24h0m0s``)."""
    whole = int(seconds)
    h, rest = divmod(whole, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{sec}s"
    return f"{m}m{sec}s" if m else f"{sec}s"


def _lock_delay(value: Any) -> float:
    """A duration string, or a number: below 1000 it counts seconds, else nanoseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if value < 1000 else float(value) * 1e-9
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise bad_request(f"Request decode failed: {exc}") from None


def _session_from(body: Any, agent_node: str, ttl_min: float) -> Session:
    if not isinstance(body, dict):
        raise bad_request("Request decode failed: expected a JSON object")
    f = Fields(body)
    s = new_session(f.get("Node", default="") or agent_node)
    s.name = str(f.get("Name", default=""))
    if f.has("LockDelay") and f.get("LockDelay") is not None:
        s.lock_delay = _lock_delay(f.get("LockDelay"))
    checks = f.get("NodeChecks", "Checks")
    if f.has("NodeChecks") or f.has("Checks"):
        s.node_checks = [str(c) for c in (checks or [])]
    service_checks = f.get("ServiceChecks")
    if service_checks is not None:
        s.service_checks = [
            {"ID": Fields(c).get("ID", default=""), "Namespace": ""} for c in service_checks
        ]
    behavior = f.get("Behavior", default="") or "release"
    if behavior not in ("release", "delete"):
        raise ConsulHTTPError(500, f"Invalid Behavior setting '{behavior}'")
    s.behavior = behavior
    ttl = f.get("TTL", default="")
    if not isinstance(ttl, str):
        raise bad_request("Request decode failed: TTL must be a duration string")
    if ttl:
        try:
            seconds = parse_duration(ttl)
        except DurationError as exc:
            raise bad_request(f"Request decode failed: {exc}") from None
        if seconds != 0 and not ttl_min <= seconds <= TTL_MAX:
            raise bad_request(
                f"TTL must be between [{_go_duration(ttl_min)}-{_go_duration(TTL_MAX)}]"
            )
        s.ttl, s.ttl_s = ttl, seconds
    return s


@routes.put("/v1/session/create")
async def session_create(request: web.Request) -> web.Response:
    t = resolve(request)
    table = table_of(t.dc, t.cluster.clock)
    session = _session_from(await read_json(request), t.agent.node, table.ttl_min)
    t.authz.require("session", session.node, "write")
    table.create(session)
    return json_response({"ID": session.id})


@routes.put("/v1/session/renew/{uuid}")
async def session_renew(request: web.Request) -> web.Response:
    t = resolve(request)
    table = table_of(t.dc, t.cluster.clock)
    sid = request.match_info["uuid"]
    found = table.sessions.get(sid)
    if found is not None:
        t.authz.require("session", found.node, "write")
    session = table.renew(sid)
    if session is None:
        raise ConsulHTTPError(404, f"Session id '{sid}' not found")
    return json_response([session.json()])


@routes.put("/v1/session/destroy/{uuid}")
async def session_destroy(request: web.Request) -> web.Response:
    t = resolve(request)
    table = table_of(t.dc, t.cluster.clock)
    sid = request.match_info["uuid"]
    found = table.sessions.get(sid)
    t.authz.require("session", found.node if found else t.agent.node, "write")
    table.invalidate(sid)
    return json_response(True)


@routes.get("/v1/session/info/{uuid}")
async def session_info(request: web.Request) -> web.Response:
    t = resolve(request)
    consistency = check_consistency(request)
    table = table_of(t.dc, t.cluster.clock)
    sid = request.match_info["uuid"]
    found = table.sessions.get(sid)
    if found is not None:
        t.authz.require("session", found.node, "read")

    def query() -> tuple[int, Any]:
        s = table.sessions.get(sid)
        return table.table_index, ([s.json()] if s is not None else [])

    idx, data = await run_blocking(
        request, t.cluster.clock, lambda: t.dc.changed, query, max_wait=t.cluster.max_wait
    )
    return json_response(data, index_headers(idx, consistency))
