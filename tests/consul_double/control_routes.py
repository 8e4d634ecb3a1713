"""``/_double/...``: the test-only control surface (contract §13). Not Consul; production code
never calls it. Every route is also available as a method of :class:`ConsulCluster`."""

from __future__ import annotations

from aiohttp import web

from tests.consul_double.routing import agent_of
from tests.consul_double.util import json_response, read_json

routes = web.RouteTableDef()


def _cluster(request: web.Request):  # noqa: ANN202
    return agent_of(request).cluster


def _ok() -> web.Response:
    return json_response(True)


@routes.put("/_double/dc/{dc}/reachable")
async def set_reachable(request: web.Request) -> web.Response:
    body = await read_json(request)
    _cluster(request).set_reachable(request.match_info["dc"], bool(body.get("reachable", True)))
    return _ok()


@routes.put("/_double/dc/{dc}/index")
async def reset_index(request: web.Request) -> web.Response:
    body = await read_json(request)
    _cluster(request).reset_index(request.match_info["dc"], int(body["index"]))
    return _ok()


@routes.put("/_double/dc/{dc}/node/{node}/{action:fail|recover}")
async def node_state(request: web.Request) -> web.Response:
    c = _cluster(request)
    dc, node = request.match_info["dc"], request.match_info["node"]
    (c.fail_node if request.match_info["action"] == "fail" else c.recover_node)(dc, node)
    return _ok()


@routes.put("/_double/dc/{dc}/node/{node}/check/{check_id}")
async def force_check(request: web.Request) -> web.Response:
    body = await read_json(request)
    _cluster(request).force_check(
        request.match_info["dc"],
        request.match_info["node"],
        request.match_info["check_id"],
        body.get("status"),
    )
    return _ok()


@routes.put("/_double/inject")
async def inject(request: web.Request) -> web.Response:
    body = await read_json(request)
    if "delay" in body:
        _cluster(request).inject_latency(int(body.get("count", 1)), float(body["delay"]))
        return _ok()
    _cluster(request).inject_errors(
        int(body.get("count", 1)),
        int(body.get("status", 500)),
        str(body.get("body", "injected failure")),
    )
    return _ok()


@routes.put("/_double/agent/{node}/{action:stop|start}")
async def listener(request: web.Request) -> web.Response:
    c = _cluster(request)
    agent = c.agent(request.match_info["node"])
    # Answer first: stopping the listener that carries this very request would cut it off.
    if request.match_info["action"] == "stop":
        c.defer(agent.stop_listener())
    else:
        await agent.start_listener()
    return _ok()


@routes.put("/_double/clock/advance")
async def advance(request: web.Request) -> web.Response:
    body = await read_json(request)
    _cluster(request).clock.advance(float(body["seconds"]))
    return _ok()
