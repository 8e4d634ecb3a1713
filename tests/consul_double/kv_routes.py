"""``/v1/kv/<key>`` (contract §9): per-DC store, base64 values, CAS, session locks
(``acquire``/``release``), 404 with index headers."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from tests.consul_double.blocking import run_blocking
from tests.consul_double.routing import index_headers, resolve
from tests.consul_double.sessions import table_of
from tests.consul_double.state import Datacenter, KVEntry
from tests.consul_double.util import (
    H_FILTERED,
    ConsulHTTPError,
    bad_request,
    check_consistency,
    flag,
    json_response,
    reject_newline,
)

routes = web.RouteTableDef()
MAX_VALUE = 512 * 1024


def entry_json(e: KVEntry) -> dict[str, Any]:
    return {
        "Key": e.key,
        "Value": base64.b64encode(e.value).decode() if e.value else None,
        "Flags": e.flags,
        "CreateIndex": e.create_index,
        "ModifyIndex": e.modify_index,
        "LockIndex": e.lock_index,
        "Session": e.session,
    }


def _uint(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise bad_request(f"Invalid {name} value")
    return int(raw)


@routes.get("/v1/kv/{key:.*}")
async def kv_get(request: web.Request) -> web.Response:
    t = resolve(request)
    key = request.match_info["key"]
    reject_newline(key)
    consistency = check_consistency(request)
    keys_only, recurse = flag(request, "keys"), flag(request, "recurse")
    separator = request.query.get("separator", "")
    if not (keys_only or recurse):
        t.authz.require("key", key, "read")
    state = {"filtered": False}

    def query() -> tuple[int, Any]:
        dc: Datacenter = t.dc
        if not (keys_only or recurse):
            e = dc.kv.get(key)
            return (e.modify_index, e) if e else (dc.kv_table_index, None)
        found = sorted((k, e) for k, e in dc.kv.items() if k.startswith(key))
        visible = [(k, e) for k, e in found if t.authz.allowed("key", k, "read")]
        state["filtered"] = len(visible) < len(found)
        return dc.kv_prefix_index(key), visible

    idx, data = await run_blocking(
        request, t.cluster.clock, lambda: t.dc.changed, query, max_wait=t.cluster.max_wait
    )
    headers = index_headers(idx, consistency)
    if state["filtered"] and t.authz.presented:
        headers[H_FILTERED] = "true"
    if data is None or data == []:
        return web.Response(status=404, headers=headers)
    if isinstance(data, KVEntry):
        if flag(request, "raw"):
            return web.Response(
                body=data.value, headers=headers, content_type="application/octet-stream"
            )
        return json_response([entry_json(data)], headers)
    if keys_only:
        return json_response(_key_names(data, key, separator), headers)
    return json_response([entry_json(e) for _, e in data], headers)


def _key_names(data: list[tuple[str, KVEntry]], prefix: str, separator: str) -> list[str]:
    """``?keys``: the keys under ``prefix``, each cut after the first ``separator`` past it."""
    names: list[str] = []
    for k, _ in data:
        if separator:
            cut = k.find(separator, len(prefix))
            k = k[: cut + len(separator)] if cut >= 0 else k
        if k not in names:
            names.append(k)
    return names


@routes.put("/v1/kv/{key:.*}")
async def kv_put(request: web.Request) -> web.Response:
    t = resolve(request)
    key = request.match_info["key"]
    reject_newline(key)
    if not key:
        raise bad_request("Missing key name")
    t.authz.require("key", key, "write")
    body = await request.read()
    if len(body) > MAX_VALUE:
        raise ConsulHTTPError(
            413,
            f"Request body(Value) too large, max size: {MAX_VALUE} bytes. See https://developer.hashicorp.com/consul/docs/agent/config/config-files#kv_max_value_size.",
        )
    flags = _uint(request, "flags") or 0
    acquire, release = request.query.get("acquire"), request.query.get("release")
    if acquire or release:  # session locks: tests/consul_double/sessions.py
        table = table_of(t.dc, t.cluster.clock)
        if acquire:
            return json_response(table.acquire(key, body, flags, acquire))
        assert release is not None
        return json_response(table.release(key, body, flags, release))
    ok = t.dc.kv_put(key, body, flags=flags, cas=_uint(request, "cas"))
    return json_response(ok)


@routes.delete("/v1/kv/{key:.*}")
async def kv_delete(request: web.Request) -> web.Response:
    t = resolve(request)
    key = request.match_info["key"]
    reject_newline(key)
    t.authz.require("key", key, "write")
    ok = t.dc.kv_delete(key, recurse=flag(request, "recurse"), cas=_uint(request, "cas"))
    return json_response(ok)
