"""GET /openapi.json: an OpenAPI 3.1 description of the gateway's own routes.

Written by hand, because the proxied bodies are OpenAI's (unknown fields pass through to the
backend, so every request schema allows additional properties). The hostile-input fuzz test
generates requests from this document, so it stays the contract: a route missing here is a
route nobody fuzzes. Routes that plugins add (``register_routes``) are not described.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

_ERROR = {"$ref": "#/components/schemas/Error"}
_TEXT_OR_LIST = {
    "anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}},
        {"type": "array", "items": {"type": "integer"}},
    ]
}
_SAMPLING: dict[str, Any] = {
    "model": {"type": "string", "minLength": 1},
    "stream": {"type": "boolean"},
    "stream_options": {"type": ["object", "null"]},
    "max_tokens": {"type": "integer", "minimum": 1},
    "max_completion_tokens": {"type": "integer", "minimum": 1},
    "n": {"type": "integer", "minimum": 1},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "seed": {"type": "integer"},
    "user": {"type": "string"},
}

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
    "ChatCompletionRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "additionalProperties": True,
        "properties": {
            **_SAMPLING,
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": {"$ref": "#/components/schemas/Message"},
            },
        },
    },
    "CompletionRequest": {
        "type": "object",
        "required": ["model", "prompt"],
        "additionalProperties": True,
        "properties": {**_SAMPLING, "prompt": _TEXT_OR_LIST},
    },
    "EmbeddingRequest": {
        "type": "object",
        "required": ["model", "input"],
        "additionalProperties": True,
        "properties": {"model": _SAMPLING["model"], "input": _TEXT_OR_LIST},
    },
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
