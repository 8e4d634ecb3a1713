"""The exception tree and the one place where exceptions become OpenAI-shaped errors.

::

    SwitchgearError
    ├── ConfigError                  bad configuration (key path + reason); never sent to clients
    └── APIError                     anything a client may see, rendered as {"error": {...}}
        ├── InvalidRequest           400 invalid_request_error (param names the field)
        │   └── ContextLengthExceeded  400 code=context_length_exceeded
        ├── AuthenticationFailed     401 authentication_error
        ├── PermissionDenied         403 permission_error
        ├── NotFound                 404 not_found_error
        │   └── ModelNotFound        404 code=model_not_found (lists available models)
        ├── MethodNotAllowed         405
        ├── PayloadTooLarge          413
        ├── RateLimited              429 (retry_after seconds → Retry-After header)
        ├── Conflict                 409
        ├── InternalError            500 server_error (message never carries a traceback)
        ├── UpstreamError            502 upstream_error (backend misbehaved)
        │   └── UpstreamStatus       passthrough of a backend's own status and error body
        ├── NoHealthyBackend         503 service_unavailable
        ├── Overloaded               503 (retry_after seconds → Retry-After header)
        └── UpstreamTimeout          504 timeout

Both programs (gateway and worker) turn exceptions into responses through
:func:`error_response` only (their error middlewares call it), so a client sees one shape
whichever of them answered, and no exception text other than an :class:`APIError`'s message
ever reaches a client: anything unexpected is a 500 with a fixed message.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


class SwitchgearError(Exception):
    """Base of every error switchgear raises on purpose."""


class ConfigError(SwitchgearError):
    """Configuration is invalid. ``path`` is the dotted key path, ``reason`` why."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


class APIError(SwitchgearError):
    """An error a client may receive. Subclasses fix status, type and code."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, param=self.param, code=self.code)


class InvalidRequest(APIError):
    status, type = 400, "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class AuthenticationFailed(APIError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class PermissionDenied(APIError):
    status, type = 403, "permission_error"


class NotFound(APIError):
    status, type = 404, "not_found_error"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(APIError):
    status, type = 405, "invalid_request_error"


class Conflict(APIError):
    status, type = 409, "conflict_error"


class PayloadTooLarge(APIError):
    status, type = 413, "invalid_request_error"
    code = "request_too_large"


class RateLimited(APIError):
    status, type, code = 429, "rate_limit_error", "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        if retry_after is not None:
            self.headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))


class InternalError(APIError):
    status, type = 500, "server_error"


class UpstreamError(APIError):
    status, type, code = 502, "upstream_error", "bad_gateway"


class UpstreamStatus(UpstreamError):
    """A backend answered with an error; its status and OpenAI-shaped body pass through."""

    def __init__(self, status: int, payload: dict[str, Any] | None, message: str) -> None:
        super().__init__(message, status=status)
        self.payload = payload

    def body(self) -> dict[str, Any]:
        if self.payload and isinstance(self.payload.get("error"), dict):
            err = self.payload["error"]
            return error_body(
                str(err.get("message") or self.message),
                str(err.get("type") or "upstream_error"),
                param=err.get("param"),
                code=err.get("code"),
            )
        return super().body()


class NoHealthyBackend(APIError):
    status, type, code = 503, "service_unavailable", "no_healthy_backend"


class Overloaded(APIError):
    """The gateway is at a resource limit of its own (e.g. request bodies in flight)."""

    status, type, code = 503, "service_unavailable", "overloaded"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        if retry_after is not None:
            self.headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))


class UpstreamTimeout(APIError):
    status, type, code = 504, "timeout", "upstream_timeout"


def error_body(
    message: str, type_: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The OpenAI error object: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


_STATUS_CLASSES: dict[int, type[APIError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    429: RateLimited,
    502: UpstreamError,
    503: NoHealthyBackend,
    504: UpstreamTimeout,
}


def for_status(status: int, message: str) -> APIError:
    """An APIError of the class matching an HTTP status (used for aiohttp's own HTTP errors)."""
    cls = _STATUS_CLASSES.get(status)
    if cls is None:
        return APIError(message, status=status) if status >= 400 else InternalError(message)
    return cls(message)


def as_api_error(
    exc: BaseException,
    request: web.Request | None = None,
    *,
    internal: str = "the server failed to handle the request",
) -> APIError:
    """The :class:`APIError` a client sees for ``exc``.

    An ``APIError`` is itself; aiohttp's HTTP errors (unknown route, wrong method, body over
    ``client_max_size``) keep their status, with the ``Allow`` header on a 405; anything
    else is a 500 with the fixed message ``internal``: the cause is logged, never sent.
    """
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        if exc.status == 404 and request is not None:
            message = f"no route for {request.method} {request.path}"
        else:
            message = exc.reason or "error"
        err = for_status(exc.status, message)
        if exc.status == 405:
            err.headers.update({k: v for k, v in exc.headers.items() if k.lower() == "allow"})
        return err
    return InternalError(internal)


def error_response(
    exc: BaseException,
    request: web.Request | None = None,
    *,
    internal: str = "the server failed to handle the request",
) -> web.Response:
    """The OpenAI-shaped JSON response for ``exc`` (see :func:`as_api_error`)."""
    err = as_api_error(exc, request, internal=internal)
    return web.Response(
        status=err.status,
        body=orjson.dumps(err.body()),
        content_type="application/json",
        headers=err.headers,
    )
