"""The admin API (needs the admin key): backends with their state, plugins, eject/readmit,
and registering external backends in Consul.

``POST /admin/backends`` ``{url, model, protocol?, service_id?, meta?}`` registers an external
backend with the local Consul agent (201 with its service ``id``); ``DELETE
/admin/backends/{id}`` removes it (204, or 404 when the agent does not know it). The backend
is routed to once Consul discovery sees its first passing health check. Both need a
``consul:`` section (else 400); the URL must match ``external_backends.url_patterns`` (else
400 naming ``url``); a Consul 403 becomes a 502 that says which permission is missing.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from switchgear.bodies import read_json_object
from switchgear.discovery.consul_client import ConsulACLError
from switchgear.discovery.registration import deregister_backend, register_external
from switchgear.errors import APIError, InvalidRequest, NotFound, UpstreamError
from switchgear.plugins.manager import describe_plugins
from switchgear.proxy import keys
from switchgear.settings.consul import ConsulSettings
from switchgear.urls import URLRefused, check_backend_url, check_health_path


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


async def backends(request: web.Request) -> web.Response:
    registry, state = request.app[keys.REGISTRY], request.app[keys.BACKEND_STATE]
    rows = [
        {
            "id": b.id,
            "model": b.model,
            "url": b.url,
            "datacenter": b.datacenter,
            "weight": b.weight,
            "protocol": b.protocol,
            "source": b.source,
            **state.describe(b.id),
        }
        for b in registry.all_backends()
    ]
    return _json({"object": "list", "data": rows})


async def plugins(request: web.Request) -> web.Response:
    return _json({"object": "list", "data": describe_plugins(request.app[keys.PLUGINS])})


async def _target(request: web.Request) -> tuple[str, str]:
    backend_id = request.match_info["backend_id"]
    if not any(b.id == backend_id for b in request.app[keys.REGISTRY].all_backends()):
        raise NotFound(f"no backend with id {backend_id!r}")
    reason = "admin"
    if request.can_read_body:
        data = await read_json_object(request, request.app[keys.SETTINGS].limits.max_body_bytes)
        if isinstance(data.get("reason"), str):
            reason = data["reason"]
    return backend_id, reason


async def eject(request: web.Request) -> web.Response:
    backend_id, reason = await _target(request)
    request.app[keys.BACKEND_STATE].eject(backend_id, reason)
    return _json({"id": backend_id, **request.app[keys.BACKEND_STATE].describe(backend_id)})


async def readmit(request: web.Request) -> web.Response:
    backend_id, reason = await _target(request)
    request.app[keys.BACKEND_STATE].readmit(backend_id, reason)
    return _json({"id": backend_id, **request.app[keys.BACKEND_STATE].describe(backend_id)})


def _consul(request: web.Request) -> ConsulSettings:
    consul = request.app[keys.SETTINGS].consul
    if consul is None or not consul.enabled:
        raise InvalidRequest(
            "registering backends needs Consul: this gateway has no enabled `consul:` section"
        )
    return consul


def _required(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"'{name}' must be a non-empty string", param=name)
    return value


def _optional(data: dict[str, Any], name: str) -> str | None:
    return None if data.get(name) is None else _required(data, name)


def _check_url(url: str, patterns: list[str], meta: dict[str, Any]) -> None:
    try:
        check_backend_url(url, patterns)
    except URLRefused as exc:
        raise InvalidRequest(f"'url' {exc}", param="url") from None
    if "health_path" in meta:
        try:
            check_health_path(meta["health_path"])
        except URLRefused as exc:
            raise InvalidRequest(str(exc), param="meta.health_path") from None


def _consul_failed(exc: Exception, consul: ConsulSettings) -> APIError:
    if isinstance(exc, ConsulACLError):
        return UpstreamError(str(exc), code="consul_permission_denied")
    return UpstreamError(f"Consul agent at {consul.host}:{consul.port} failed: {exc}")


async def register(request: web.Request) -> web.Response:
    consul = _consul(request)
    data = await read_json_object(request, request.app[keys.SETTINGS].limits.max_body_bytes)
    url, model = _required(data, "url"), _required(data, "model")
    meta = data.get("meta") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise InvalidRequest("'meta' must be an object of strings", param="meta")
    _check_url(url, request.app[keys.SETTINGS].external_backends.url_patterns, meta)
    try:
        service_id = await register_external(
            consul,
            url,
            model,
            service_id=_optional(data, "service_id"),
            protocol=_optional(data, "protocol") or "openai",
            meta=meta,
        )
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="url") from None
    except Exception as exc:
        raise _consul_failed(exc, consul) from None
    body = {"id": service_id, "object": "backend", "model": model, "url": url}
    return web.Response(status=201, body=orjson.dumps(body), content_type="application/json")


async def deregister(request: web.Request) -> web.Response:
    consul = _consul(request)
    service_id = request.match_info["service_id"]
    try:
        known = await deregister_backend(consul, service_id)
    except Exception as exc:
        raise _consul_failed(exc, consul) from None
    if not known:
        raise NotFound(f"the Consul agent knows no service {service_id!r}")
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    app.router.add_get("/admin/backends", backends)
    app.router.add_post("/admin/backends", register)
    app.router.add_delete("/admin/backends/{service_id}", deregister)
    app.router.add_post("/admin/backends/{backend_id:.+}/eject", eject)
    app.router.add_post("/admin/backends/{backend_id:.+}/readmit", readmit)
    app.router.add_get("/admin/plugins", plugins)
