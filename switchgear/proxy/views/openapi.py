"""GET /openapi.json: an OpenAPI 3.1 description of the gateway's own routes.

The proxied request schemas come from the gateway's own checks
(:func:`switchgear.proxy.request.request_schema`): every field the gateway validates is
described with the constraint it enforces. Sampling fields it forwards unchecked are added
for clients' sake; unknown fields pass through to the backend, so every request schema
allows additional properties. The hostile-input fuzz test generates requests from this
document, so it stays the contract: a route missing here is a route nobody fuzzes. Routes
that plugins add (``register_routes``) are not described.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from switchgear.proxy.request import request_schema
from switchgear.proxy.responses import PATH as RESPONSES_PATH
from switchgear.proxy.responses import SCHEMA as RESPONSES_SCHEMA
from switchgear.types import Endpoint

_ERROR = {"$ref": "#/components/schemas/Error"}
#: Forwarded to the backend unchecked (the backend validates them): documentation only.
_SAMPLING: dict[str, Any] = {
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "seed": {"type": "integer"},
    "user": {"type": "string"},
}


def _proxied(endpoint: Endpoint, documented: dict[str, Any]) -> dict[str, Any]:
    """The checked fields of ``endpoint`` plus the unchecked ones ``documented``."""
    schema = request_schema(endpoint)
    return {**schema, "properties": {**documented, **schema["properties"]}}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
    "Message": {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {"type": "string", "enum": ["system", "user", "assistant", "tool"]},
            "content": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "null"},
                    {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "type": {"type": "string", "enum": ["text"]},
                                "text": {"type": "string"},
                            },
                        },
                    },
                ]
            },
        },
    },
    "ChatCompletionRequest": _proxied("chat.completions", _SAMPLING),
    "CompletionRequest": _proxied("completions", _SAMPLING),
    "EmbeddingRequest": _proxied("embeddings", {}),
    "ResponsesRequest": RESPONSES_SCHEMA,
    "RegisterBackend": {
        "type": "object",
        "required": ["url", "model"],
        "properties": {
            "url": {"type": "string"},
            "model": {"type": "string"},
            "protocol": {"type": "string"},
            "service_id": {"type": "string"},
            "meta": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "Reason": {"type": "object", "properties": {"reason": {"type": "string"}}},
}


def _op(summary: str, *, body: str | None = None, admin: bool = False, **extra: Any) -> Any:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK"},
            "default": {
                "description": "OpenAI-shaped error",
                "content": {"application/json": {"schema": _ERROR}},
            },
        },
        **extra,
    }
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    op["security"] = [{"admin": []}] if admin else [{"apiKey": []}, {}]
    return op


def _path_param(name: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]


def document() -> dict[str, Any]:
    backend = _path_param("backend_id")
    return {
        "openapi": "3.1.0",
        "info": {"title": "switchgear gateway", "version": "1"},
        "paths": {
            "/v1/chat/completions": {
                "post": _op("Chat completion, streamed (SSE) or not", body="ChatCompletionRequest")
            },
            "/v1/completions": {"post": _op("Text completion", body="CompletionRequest")},
            "/v1/embeddings": {"post": _op("Embeddings", body="EmbeddingRequest")},
            RESPONSES_PATH: {
                "post": _op(
                    "Responses API, streamed (SSE events) or not; translated to chat completions "
                    "for backends without it",
                    body="ResponsesRequest",
                )
            },
            "/v1/models": {"get": _op("Every known model")},
            "/v1/models/{model_id}": {"get": _op("One model", parameters=_path_param("model_id"))},
            "/healthz": {"get": _op("Liveness")},
            "/readyz": {"get": _op("Readiness: some backend is healthy")},
            "/metrics": {"get": _op("Prometheus metrics")},
            "/openapi.json": {"get": _op("This document")},
            "/admin/backends": {
                "get": _op("Backends with their state", admin=True),
                "post": _op(
                    "Register an external backend in Consul", body="RegisterBackend", admin=True
                ),
            },
            "/admin/backends/{service_id}": {
                "delete": _op(
                    "Deregister an external backend",
                    admin=True,
                    parameters=_path_param("service_id"),
                )
            },
            "/admin/backends/{backend_id}/eject": {
                "post": _op("Eject a backend", admin=True, parameters=backend)
            },
            "/admin/backends/{backend_id}/readmit": {
                "post": _op("Readmit a backend", admin=True, parameters=backend)
            },
            "/admin/plugins": {"get": _op("Loaded plugins", admin=True)},
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer"},
                "admin": {"type": "http", "scheme": "bearer"},
            },
        },
    }


_BODY = orjson.dumps(document())


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_BODY, content_type="application/json")


def setup(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi)
