"""The one reader that turns an HTTP request body into a JSON object, for gateway and worker.

:func:`read_json_object` enforces the body limit (413), parses with orjson, and raises
:class:`~switchgear.errors.InvalidRequest` (400) for anything that is not a JSON object:
invalid JSON, another top-level type, or nesting deeper than orjson accepts.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from switchgear.errors import InvalidRequest, PayloadTooLarge


def loads_object(raw: bytes) -> dict[str, Any]:
    """``raw`` parsed as a JSON object, or :class:`InvalidRequest`."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest("request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body


async def read_json_object(request: web.Request, limit: int | None = None) -> dict[str, Any]:
    """The request's body as a JSON object; ``limit`` bytes at most (413 beyond)."""
    if limit is not None and request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(
            f"request body is {request.content_length} bytes; the limit is {limit}"
        )
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes") from None
    if limit is not None and len(raw) > limit:
        raise PayloadTooLarge(f"request body is {len(raw)} bytes; the limit is {limit}")
    return loads_object(raw)
