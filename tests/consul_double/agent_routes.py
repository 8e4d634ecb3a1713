"""``/v1/agent/...`` routes (contract §4): they act on the agent answering and ignore ``?dc``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.consul_double.agent import STATUSES, LocalCheck, LocalService
from tests.consul_double.routing import resolve
from tests.consul_double.util import (
    Fields,
    bad_request,
    flag,
    json_response,
    read_json,
    reject_newline,
)

routes = web.RouteTableDef()


def _empty() -> web.Response:
    return web.Response(status=200, body=b"")


def service_json(svc: LocalService, dc: str) -> dict[str, Any]:
    return {
        "ID": svc.id,
        "Service": svc.name,
        "Tags": list(svc.tags),
        "Meta": dict(svc.meta),
        "Port": svc.port,
        "Address": svc.address,
        "TaggedAddresses": svc.tagged_addresses,
        "Weights": dict(svc.weights),
        "EnableTagOverride": svc.enable_tag_override,
        "Datacenter": dc,
        "ContentHash": f"{abs(hash((svc.id, svc.port, tuple(svc.meta.items())))):016x}",
    }


def check_json(chk: LocalCheck, node: str) -> dict[str, Any]:
    from tests.consul_double.util import format_duration

    return {
        "Node": node,
        "CheckID": chk.check_id,
        "Name": chk.name,
        "Status": chk.status,
        "Notes": chk.notes,
        "Output": chk.output,
        "ServiceID": chk.service_id,
        "ServiceName": chk.service_name,
        "ServiceTags": [],
        "Type": chk.type,
        "Interval": format_duration(chk.interval),
        "Timeout": format_duration(chk.timeout),
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": 0,
        "ModifyIndex": 0,
    }


@routes.put("/v1/agent/service/register")
async def register(request: web.Request) -> web.Response:
    t = resolve(request, honour_dc=False)
    body = await read_json(request)
    name = Fields(body).get("Name", "Service", default="") if isinstance(body, dict) else ""
    if name:
        t.authz.require("service", name, "write")
    t.agent.register(body, replace_existing_checks=flag(request, "replace-existing-checks"))
    return _empty()


@routes.put("/v1/agent/service/deregister/{service_id}")
async def deregister(request: web.Request) -> web.Response:
    t = resolve(request, honour_dc=False)
    sid = request.match_info["service_id"]
    reject_newline(sid)
    svc = t.agent.services.get(sid)
    if svc is not None:
        t.authz.require("service", svc.name, "write")
    t.agent.deregister(sid)
    return _empty()


@routes.get("/v1/agent/services")
async def services(request: web.Request) -> web.Response:
    t = resolve(request, honour_dc=False)
    if request.query.get("filter"):
        raise bad_request("the double does not evaluate filter expressions")
    out = {
        sid: service_json(s, t.agent.dc.name)
        for sid, s in t.agent.services.items()
        if t.authz.allowed("service", s.name, "read")
    }
    return json_response(out)


@routes.get("/v1/agent/service/{service_id}")
async def service(request: web.Request) -> web.Response:
    t = resolve(request, honour_dc=False)
    sid = request.match_info["service_id"]
    svc = t.agent.services.get(sid)
    if svc is None:
        return web.Response(
            status=404, text=f"unknown service ID: {sid}", content_type="text/plain"
        )
    t.authz.require("service", svc.name, "read")
    return json_response(service_json(svc, t.agent.dc.name))


@routes.get("/v1/agent/checks")
async def checks(request: web.Request) -> web.Response:
    t = resolve(request, honour_dc=False)
    out = {
        cid: check_json(c, t.agent.node)
        for cid, c in t.agent.checks.items()
        if t.authz.allowed("service", c.service_name, "read") or not c.service_name
    }
    return json_response(out)


@routes.get("/v1/agent/self")
async def self_(request: web.Request) -> web.Response:
    t = resolve(request, honour_dc=False)
    return json_response(
        {
            "Config": {"Datacenter": t.agent.dc.name, "NodeName": t.agent.node},
            "Member": {"Name": t.agent.node, "Addr": t.agent.address},
        }
    )


def _ttl_route(status: str):  # noqa: ANN202
    async def handler(request: web.Request) -> web.Response:
        t = resolve(request, honour_dc=False)
        cid = request.match_info["check_id"]
        chk = t.agent.checks.get(cid)
        if chk is not None and chk.service_name:
            t.authz.require("service", chk.service_name, "write")
        elif chk is not None:
            t.authz.require("node", t.agent.node, "write")
        t.agent.update_check(cid, status, request.query.get("note", ""))
        return _empty()

    return handler


for _verb, _status in (("pass", "passing"), ("warn", "warning"), ("fail", "critical")):
    routes.put(f"/v1/agent/check/{_verb}/{{check_id}}")(_ttl_route(_status))


@routes.put("/v1/agent/check/update/{check_id}")
async def update(request: web.Request) -> web.Response:
    t = resolve(request, honour_dc=False)
    cid = request.match_info["check_id"]
    f = Fields(await read_json(request))
    status = f.get("Status", default="")
    if status not in STATUSES:
        raise bad_request("Invalid status " + repr(status))
    chk = t.agent.checks.get(cid)
    if chk is not None and chk.service_name:
        t.authz.require("service", chk.service_name, "write")
    t.agent.update_check(cid, status, f.get("Output", default=""))
    return _empty()
