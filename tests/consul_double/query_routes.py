"""Prepared queries (contract §10): stored in the DC that created them, executed with the
exact failover algorithm, response fields at the top level."""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.consul_double.catalog_routes import check_json, median_rtt, node_json, service_json
from tests.consul_double.routing import Target, index_headers, resolve
from tests.consul_double.state import Datacenter
from tests.consul_double.util import ConsulHTTPError, Fields, json_response, read_json

routes = web.RouteTableDef()
NOT_FOUND = "Query not found"


@dataclass(slots=True)
class PreparedQuery:
    id: str
    definition: dict[str, Any]
    name: str = ""
    token: str = ""
    template: str = ""
    regexp: str = ""
    create_index: int = 0
    modify_index: int = 0
    service: dict[str, Any] = field(default_factory=dict)


def _parse(body: Any, qid: str) -> PreparedQuery:
    f = Fields(body if isinstance(body, dict) else {})
    svc = Fields(f.get("Service", default={}) or {})
    if not svc.get("Service"):
        raise ConsulHTTPError(500, "Must provide a Service name to query")
    failover = Fields(svc.get("Failover", default={}) or {})
    if failover.get("Targets") and (failover.get("NearestN") or failover.get("Datacenters")):
        raise ConsulHTTPError(500, "Targets cannot be populated with NearestN or Datacenters")
    tmpl = Fields(f.get("Template", default={}) or {})
    service = {
        "Service": svc.get("Service"),
        "NearestN": int(failover.get("NearestN", default=0) or 0),
        "Datacenters": list(failover.get("Datacenters", default=[]) or []),
        "OnlyPassing": bool(svc.get("OnlyPassing", default=False)),
        "IgnoreCheckIDs": list(svc.get("IgnoreCheckIDs", default=[]) or []),
        "Tags": list(svc.get("Tags", default=[]) or []),
        "NodeMeta": dict(svc.get("NodeMeta", default={}) or {}),
        "ServiceMeta": dict(svc.get("ServiceMeta", default={}) or {}),
        "Near": svc.get("Near", default=""),
    }
    definition = {
        "ID": qid,
        "Name": f.get("Name", default=""),
        "Session": f.get("Session", default=""),
        "Token": f.get("Token", default=""),
        "Service": {
            **{k: v for k, v in service.items() if k not in ("NearestN", "Datacenters")},
            "Failover": {"NearestN": service["NearestN"], "Datacenters": service["Datacenters"]},
        },
        "DNS": {"TTL": Fields(f.get("DNS", default={}) or {}).get("TTL", default="")},
        "Template": {
            "Type": tmpl.get("Type", default=""),
            "Regexp": tmpl.get("Regexp", default=""),
        },
    }
    return PreparedQuery(
        qid,
        definition,
        definition["Name"],
        definition["Token"],
        tmpl.get("Type", default=""),
        tmpl.get("Regexp", default=""),
        service=service,
    )


def _public(t: Target, q: PreparedQuery) -> dict[str, Any]:
    d = dict(q.definition)
    if q.token and not (t.authz.token and t.authz.token.management):
        d["Token"] = "<hidden>"
    d["CreateIndex"], d["ModifyIndex"] = q.create_index, q.modify_index
    return d


def _store(t: Target, q: PreparedQuery, existing: PreparedQuery | None) -> None:
    t.authz.require("query", q.name, "write")
    if q.name and any(o.name == q.name and o.id != q.id for o in t.dc.queries.values()):
        raise ConsulHTTPError(500, f'A prepared query with name "{q.name}" already exists')
    if (
        not q.name
        and q.template
        and any(o.template and not o.name and o.id != q.id for o in t.dc.queries.values())
    ):
        raise ConsulHTTPError(500, "a catch-all template already exists")
    idx = t.dc.bump()
    q.create_index = existing.create_index if existing else idx
    q.modify_index = idx
    t.dc.queries[q.id] = q
    t.dc.notify()


@routes.post("/v1/query")
async def create(request: web.Request) -> web.Response:
    t = resolve(request)
    q = _parse(await read_json(request), str(uuid.uuid4()))
    _store(t, q, None)
    return json_response({"ID": q.id})


@routes.get("/v1/query")
async def list_queries(request: web.Request) -> web.Response:
    t = resolve(request)
    visible = [
        _public(t, q) for q in t.dc.queries.values() if t.authz.allowed("query", q.name, "read")
    ]
    return json_response(visible, index_headers(t.dc.index))


def _lookup(dc: Datacenter, id_or_name: str) -> tuple[PreparedQuery, str]:
    if id_or_name in dc.queries:
        return dc.queries[id_or_name], id_or_name
    for q in dc.queries.values():
        if q.name == id_or_name and not q.template:
            return q, id_or_name
    for q in dc.queries.values():
        if q.name == id_or_name:
            return q, id_or_name
    templates = [q for q in dc.queries.values() if q.template and id_or_name.startswith(q.name)]
    if templates:
        return max(templates, key=lambda q: len(q.name)), id_or_name
    raise ConsulHTTPError(404, NOT_FOUND)


@routes.get("/v1/query/{qid}")
async def get_query(request: web.Request) -> web.Response:
    t = resolve(request)
    q = t.dc.queries.get(request.match_info["qid"])
    if q is None:
        raise ConsulHTTPError(404, NOT_FOUND)
    t.authz.require("query", q.name, "read")
    return json_response([_public(t, q)], index_headers(t.dc.index))


@routes.put("/v1/query/{qid}")
async def update_query(request: web.Request) -> web.Response:
    t = resolve(request)
    qid = request.match_info["qid"]
    existing = t.dc.queries.get(qid)
    if existing is None:
        raise ConsulHTTPError(404, NOT_FOUND)
    _store(t, _parse(await read_json(request), qid), existing)
    return web.Response(status=200, body=b"")


@routes.delete("/v1/query/{qid}")
async def delete_query(request: web.Request) -> web.Response:
    t = resolve(request)
    q = t.dc.queries.get(request.match_info["qid"])
    if q is None:
        raise ConsulHTTPError(404, NOT_FOUND)
    t.authz.require("query", q.name, "write")
    del t.dc.queries[q.id]
    t.dc.bump()
    t.dc.notify()
    return web.Response(status=200, body=b"")


def _interpolate(q: PreparedQuery, executed: str) -> dict[str, Any]:
    svc = dict(q.service)
    if not q.template:
        return svc
    m = re.match(q.regexp, executed) if q.regexp else None
    values = {"name.full": executed, "name.prefix": q.name, "name.suffix": executed[len(q.name) :]}

    def sub(text: str) -> str:
        text = re.sub(
            r"\$\{match\((\d+)\)\}", lambda mm: (m.group(int(mm.group(1))) or "") if m else "", text
        )
        return re.sub(r"\$\{(name\.\w+)\}", lambda mm: values.get(mm.group(1), ""), text)

    svc["Service"] = sub(svc["Service"])
    svc["Tags"] = [sub(x) for x in svc["Tags"]]
    return svc


def _candidates(
    t: Target, dc: Datacenter, svc: dict[str, Any], token_of_query: str
) -> list[dict[str, Any]]:
    from tests.consul_double.acl import Authz

    authz = t.authz
    if token_of_query and t.cluster.acl.enabled:
        authz = Authz(t.cluster.acl, t.cluster.acl.tokens.get(token_of_query), True)
    want = [x.lower() for x in svc["Tags"] if not x.startswith("!")]
    deny = [x[1:].lower() for x in svc["Tags"] if x.startswith("!")]
    out = []
    for inst in dc.instances(svc["Service"]):
        checks = [c for c in dc.checks_of(inst) if c.check_id not in svc["IgnoreCheckIDs"]]
        if any(c.status == "critical" for c in checks):
            continue
        if svc["OnlyPassing"] and any(c.status == "warning" for c in checks):
            continue
        tags = {x.lower() for x in inst.tags}
        if any(x not in tags for x in want) or any(x in tags for x in deny):
            continue
        node = dc.nodes[inst.node]
        if any(node.meta.get(k) != v for k, v in svc["NodeMeta"].items()):
            continue
        if any(inst.meta.get(k) != v for k, v in svc["ServiceMeta"].items()):
            continue
        if not (
            authz.allowed("service", inst.service, "read")
            and authz.allowed("node", inst.node, "read")
        ):
            continue
        out.append(
            {
                "Node": node_json(node, dc.name),
                "Service": service_json(inst),
                "Checks": [check_json(c) for c in checks],
            }
        )
    random.shuffle(out)
    return out


@routes.get("/v1/query/{qid}/execute")
async def execute(request: web.Request) -> web.Response:
    t = resolve(request)
    q, executed = _lookup(t.dc, request.match_info["qid"])
    svc = _interpolate(q, executed)
    limit = int(request.query.get("limit", "0") or 0)

    def cut(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return nodes[:limit] if limit > 0 else nodes

    nodes, answered, failovers = cut(_candidates(t, t.dc, svc, q.token)), t.dc.name, 0
    if not nodes:
        others = sorted(
            (d for d in t.cluster.datacenters.values() if d is not t.dc),
            key=lambda d: (median_rtt(t.dc, d), d.name),
        )
        order = [d.name for d in others[: svc["NearestN"]]]
        order += [
            n
            for n in svc["Datacenters"]
            if n in t.cluster.datacenters and n not in order and n != t.dc.name
        ]
        for name in order:
            failovers += 1
            remote = t.cluster.datacenters[name]
            if not remote.reachable:
                continue  # an erroring DC is skipped but counted
            found = cut(_candidates(t, remote, svc, q.token))
            if found:
                nodes, answered = found, name
                break
    body = {
        "Service": svc["Service"],
        "Nodes": nodes,
        "DNS": {"TTL": q.definition["DNS"]["TTL"]},
        "Datacenter": answered,
        "Failovers": failovers,
    }
    return json_response(body, index_headers(t.dc.index))
