"""Discovery reads (contract §6, §7, §8): health/service, catalog, coordinates. Blocking per
§3, answered from the ``?dc`` datacenter, silently ACL-filtered (§11.1)."""

from __future__ import annotations

import statistics
from typing import Any

from aiohttp import web

from tests.consul_double.blocking import run_blocking
from tests.consul_double.routing import Target, index_headers, resolve
from tests.consul_double.state import CatalogCheck, CatalogNode, CatalogService, Datacenter, rtt
from tests.consul_double.util import (
    H_FILTERED,
    ConsulHTTPError,
    check_consistency,
    json_response,
    parse_passing,
    reject_newline,
)

routes = web.RouteTableDef()


def node_json(node: CatalogNode, dc: str) -> dict[str, Any]:
    return {
        "ID": node.id,
        "Node": node.name,
        "Address": node.address,
        "Datacenter": dc,
        "TaggedAddresses": {
            "lan": node.address,
            "lan_ipv4": node.address,
            "wan": node.address,
            "wan_ipv4": node.address,
        },
        "Meta": dict(node.meta),
        "CreateIndex": node.create_index,
        "ModifyIndex": node.modify_index,
    }


def service_json(svc: CatalogService) -> dict[str, Any]:
    return {
        "ID": svc.id,
        "Service": svc.service,
        "Tags": list(svc.tags),
        "Address": svc.address,
        "Port": svc.port,
        "TaggedAddresses": svc.tagged_addresses,
        "Meta": dict(svc.meta),
        "Weights": dict(svc.weights),
        "EnableTagOverride": svc.enable_tag_override,
        "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
        "Connect": {},
        "CreateIndex": svc.create_index,
        "ModifyIndex": svc.modify_index,
    }


def check_json(chk: CatalogCheck) -> dict[str, Any]:
    return {
        "Node": chk.node,
        "CheckID": chk.check_id,
        "Name": chk.name,
        "Status": chk.status,
        "Notes": chk.notes,
        "Output": chk.output,
        "ServiceID": chk.service_id,
        "ServiceName": chk.service_name,
        "ServiceTags": list(chk.service_tags),
        "Type": chk.type,
        "Interval": chk.interval,
        "Timeout": chk.timeout,
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": chk.create_index,
        "ModifyIndex": chk.modify_index,
    }


def _reject_filter(request: web.Request) -> None:
    expr = request.query.get("filter")
    if expr:
        # §6: MUST answer 500 for anything it cannot evaluate, never ignore it silently.
        raise ConsulHTTPError(
            500,
            f"Failed to create boolean expression evaluator: the double does not support {expr!r}",
        )


def _visible(t: Target, svc: CatalogService) -> bool:
    return t.authz.allowed("service", svc.service, "read") and t.authz.allowed(
        "node", svc.node, "read"
    )


def _reply(t: Target, idx: int, data: Any, consistency: str, filtered: bool) -> web.Response:
    headers = index_headers(idx, consistency)
    if filtered and t.authz.presented:
        headers[H_FILTERED] = "true"
    return json_response(data, headers)


async def _blocking_reply(request: web.Request, t: Target, query: Any) -> web.Response:
    consistency = check_consistency(request)
    state: dict[str, bool] = {"filtered": False}

    def run() -> tuple[int, Any]:
        idx, data, filtered = query(t.dc)
        state["filtered"] = filtered
        return idx, data

    idx, data = await run_blocking(
        request, t.cluster.clock, lambda: t.dc.changed, run, max_wait=t.cluster.max_wait
    )
    return _reply(t, idx, data, consistency, state["filtered"])


@routes.get("/v1/health/service/{service}")
async def health_service(request: web.Request) -> web.Response:
    t = resolve(request)
    name = request.match_info["service"]
    reject_newline(name)
    passing = parse_passing(request)
    tags = [x.lower() for x in request.query.getall("tag", [])]
    node_meta = [x.split(":", 1) for x in request.query.getall("node-meta", [])]
    _reject_filter(request)

    def query(dc: Datacenter) -> tuple[int, list[dict[str, Any]], bool]:
        out, filtered = [], False
        for svc in dc.instances(name):
            if not _visible(t, svc):
                filtered = True
                continue
            have = {x.lower() for x in svc.tags}
            if any(tag not in have for tag in tags):
                continue
            node = dc.nodes[svc.node]
            if any(node.meta.get(kv[0]) != (kv[1] if len(kv) > 1 else "") for kv in node_meta):
                continue
            checks = dc.checks_of(svc)
            if passing and any(c.status != "passing" for c in checks):
                continue
            out.append(
                {
                    "Node": node_json(node, dc.name),
                    "Service": service_json(svc),
                    "Checks": [check_json(c) for c in checks],
                }
            )
        return dc.index_of_service(name), out, filtered

    return await _blocking_reply(request, t, query)


@routes.get("/v1/catalog/service/{service}")
async def catalog_service(request: web.Request) -> web.Response:
    t = resolve(request)
    name = request.match_info["service"]
    reject_newline(name)
    _reject_filter(request)

    def query(dc: Datacenter) -> tuple[int, list[dict[str, Any]], bool]:
        out, filtered = [], False
        for svc in dc.instances(name):
            if not _visible(t, svc):
                filtered = True
                continue
            node = dc.nodes[svc.node]
            out.append(
                {
                    "ID": node.id,
                    "Node": node.name,
                    "Address": node.address,
                    "Datacenter": dc.name,
                    "NodeMeta": dict(node.meta),
                    "ServiceID": svc.id,
                    "ServiceName": svc.service,
                    "ServiceAddress": svc.address,
                    "ServicePort": svc.port,
                    "ServiceTags": list(svc.tags),
                    "ServiceMeta": dict(svc.meta),
                    "ServiceWeights": dict(svc.weights),
                    "ServiceTaggedAddresses": svc.tagged_addresses,
                    "CreateIndex": svc.create_index,
                    "ModifyIndex": svc.modify_index,
                }
            )
        return dc.index_of_service(name), out, filtered

    return await _blocking_reply(request, t, query)


@routes.get("/v1/catalog/services")
async def catalog_services(request: web.Request) -> web.Response:
    t = resolve(request)
    _reject_filter(request)

    def query(dc: Datacenter) -> tuple[int, dict[str, list[str]], bool]:
        out: dict[str, list[str]] = {}
        filtered = False
        for svc in dc.services.values():
            if not _visible(t, svc):
                filtered = True
                continue
            tags = out.setdefault(svc.service, [])
            tags.extend(x for x in svc.tags if x not in tags)
        return dc.services_table_index, out, filtered

    return await _blocking_reply(request, t, query)


@routes.get("/v1/catalog/nodes")
async def catalog_nodes(request: web.Request) -> web.Response:
    t = resolve(request)
    _reject_filter(request)

    def query(dc: Datacenter) -> tuple[int, list[dict[str, Any]], bool]:
        nodes = [n for n in dc.nodes.values() if t.authz.allowed("node", n.name, "read")]
        return (
            dc.nodes_table_index,
            [node_json(n, dc.name) for n in nodes],
            len(nodes) < len(dc.nodes),
        )

    return await _blocking_reply(request, t, query)


@routes.get("/v1/catalog/datacenters")
async def catalog_datacenters(request: web.Request) -> web.Response:
    """§7.1: name order, then stable by median RTT from the answering server; no index headers."""
    agent = resolve(request, honour_dc=False).agent
    return json_response(agent.cluster.datacenter_order(agent.dc.name))


@routes.get("/v1/coordinate/datacenters")
async def coordinate_datacenters(request: web.Request) -> web.Response:
    agent = resolve(request, honour_dc=False).agent
    out = []
    for dc in agent.cluster.datacenters.values():
        if not dc.has_coordinates:
            continue
        out.append(
            {
                "Datacenter": dc.name,
                "AreaID": "wan",
                "Coordinates": [
                    {
                        "Node": s.name,
                        "Coord": {
                            "Vec": list(s.vec),
                            "Error": 0.2,
                            "Adjustment": s.adjustment,
                            "Height": s.height,
                        },
                    }
                    for s in dc.servers
                ],
            }
        )
    return json_response(out)


def median_rtt(src: Datacenter, dst: Datacenter) -> float:
    if src is dst:
        return 0.0
    if not (src.has_coordinates and dst.has_coordinates):
        return float("inf")
    return statistics.median(rtt(src.servers[0], s) for s in dst.servers)
