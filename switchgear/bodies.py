"""The one reader that turns an HTTP request body into a JSON object, for gateway and worker.

:func:`read_json_object` enforces the body limit (413), parses with orjson, and raises
:class:`~switchgear.errors.InvalidRequest` (400) for anything that is not a JSON object:
invalid JSON, another top-level type, or nesting deeper than :data:`MAX_DEPTH`.

Why a depth limit below orjson's own: orjson *parses* up to 1024 levels but *encodes* at
most 254, and the gateway re-encodes every body it forwards (an adapter may wrap it in
another level or two). Without the check, a body 254-1023 levels deep, even in a field
nobody reads, parses fine here and then fails as a 500 when it is forwarded. 128 levels is
far more than any OpenAI request needs (JSON schemas of tools included) and leaves room.

The check is that very encoding, with headroom: the body wrapped in ``254 - MAX_DEPTH``
lists must encode, which holds exactly when it is at most ``MAX_DEPTH`` deep. It runs in C
(a walk in Python over tens of thousands of messages took longer than parsing them), and
only for bodies with more than ``MAX_DEPTH`` brackets, which bounds their depth from above.
"""

from __future__ import annotations

import io
from typing import Any

import orjson
from aiohttp import web

from switchgear.errors import InvalidRequest, PayloadTooLarge

#: Bodies larger than this are sent upstream from a buffer, written in chunks as the
#: connection drains (aiohttp writes a ``bytes`` body at once and warns above 1 MiB).
STREAM_BODY_BYTES = 1024 * 1024
#: The deepest nesting a request body may have; the top-level object is depth 1.
MAX_DEPTH = 128
#: The deepest structure ``orjson.dumps`` encodes (tests/hardening/test_nesting.py pins it).
_ORJSON_MAX_DEPTH = 254


def loads_object(raw: bytes) -> dict[str, Any]:
    """``raw`` parsed as a JSON object, or :class:`InvalidRequest`."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise _too_deep() from None
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise _too_deep() from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and not _encodes_within_limit(body):
        raise _too_deep()
    return body


def _encodes_within_limit(body: dict[str, Any]) -> bool:
    """Whether ``body`` is at most MAX_DEPTH deep (see the module docstring)."""
    wrapped: Any = body
    for _ in range(_ORJSON_MAX_DEPTH - MAX_DEPTH):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        return False
    return True


def _too_deep() -> InvalidRequest:
    return InvalidRequest(
        f"request body is nested too deeply: at most {MAX_DEPTH} levels of arrays and objects"
    )


def outgoing_body(raw: bytes) -> bytes | io.BytesIO:
    """``raw`` as the body of an upstream request: large (vision) bodies as a buffer."""
    return io.BytesIO(raw) if len(raw) > STREAM_BODY_BYTES else raw


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
