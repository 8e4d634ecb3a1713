"""The public plugin contract of switchgear: every hook a plugin may implement.

Plugin authors write::

    from switchgear import hookimpl

    @hookimpl
    def rewrite_request(ctx, body, backend):
        body.setdefault("user", ctx.request_id)
        return body

Calling rules (see :mod:`switchgear.plugins.manager`): an implementation that raises is
logged with its plugin's name and skipped for that call (except
:class:`~switchgear.errors.APIError`, raised on purpose to answer the client, e.g. the
router's ``context_length_exceeded``); one that runs longer than the
configured plugin timeout is abandoned; implementations may be ``async def`` and are
awaited. ``firstresult`` hooks stop at the first implementation returning non-``None``;
built-in defaults are ``trylast`` so a third-party plugin wins.

Every hook here has a heading in ``docs/plugins.md`` equal to its signature and a test
named ``test_hook_<name>``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from aiohttp import web

    from switchgear.types import (
        Action,
        Adapter,
        AnomalyEvent,
        Backend,
        ModelInfo,
        RequestContext,
        RouteDecision,
        ScaleRequest,
        ScaleResult,
    )

PROJECT = "switchgear"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- startup -----------------------------------------------------------------------------


@hookspec
def startup(app: web.Application) -> None:
    """Returns nothing (or an awaitable). Called once when the gateway or worker app starts."""


@hookspec
def shutdown(app: web.Application) -> None:
    """Returns nothing (or an awaitable). Called once when the app stops, before resources close."""


@hookspec
def register_routes(register: Callable[[str, str, Callable[..., Any]], None]) -> None:
    """Returns nothing; calls ``register(method, path, handler)`` for each extra aiohttp route."""


# --- discovery ---------------------------------------------------------------------------


@hookspec
def register_discovery(register: Callable[[Any], None], settings: Any) -> None:
    """Returns nothing; calls ``register(source)`` with a discovery source for the gateway.

    A source is an object with ``name`` and ``async def run(registry)`` that keeps the
    registry's backends up to date until cancelled (see :mod:`switchgear.discovery.base`).
    """


# --- request -----------------------------------------------------------------------------


@hookspec(firstresult=True)
def select_model(ctx: RequestContext, models: Mapping[str, ModelInfo]) -> RouteDecision | None:
    """Returns the concrete model for a request that named a routing alias, or None to pass."""


@hookspec
def rewrite_request(
    ctx: RequestContext, body: dict[str, Any], backend: Backend
) -> dict[str, Any] | None:
    """Returns the request body to send (or None to keep it). Called in turn; each sees the last."""


@hookspec
def rewrite_response(
    ctx: RequestContext, body: dict[str, Any], backend: Backend
) -> dict[str, Any] | None:
    """Returns the response body (or chunk) for the client, or None to keep it unchanged."""


# --- backends ----------------------------------------------------------------------------


@hookspec(firstresult=True)
def order_backends(
    ctx: RequestContext, backends: Sequence[Backend], stats: Any
) -> list[Backend] | None:
    """Returns the backends in the order to try them (load balancing), or None to pass."""


@hookspec(firstresult=True)
def adapter_for_backend(backend: Backend) -> Adapter | None:
    """Returns the adapter that speaks ``backend.protocol``, or None when this plugin cannot."""


# --- worker ------------------------------------------------------------------------------


@hookspec(firstresult=True)
def load_model(spec: Any) -> Any | None:
    """Returns a loaded model bundle for a worker model spec, or None to let another plugin load it."""


@hookspec(firstresult=True)
def quantize_model(bundle: Any, method: str, spec: Any) -> Any | None:
    """Returns the bundle quantized with ``method`` (e.g. int8-dynamic, quanto-int8, onnx), or None."""


@hookspec
def verify_swap(current: Any, candidate: Any, settings: Any) -> Any | None:
    """Returns a gate result (or list of them) judging a hot-swap candidate; None to abstain."""


# --- detection ---------------------------------------------------------------------------


@hookspec
def register_detectors(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Returns nothing; calls ``register(name, factory)`` for each anomaly detector it offers."""


@hookspec
def on_anomaly(event: AnomalyEvent, gateway: Any) -> list[Action] | None:
    """Returns the actions taken for an opened or closed anomaly event (may be awaitable)."""


@hookspec(firstresult=True)
def scale(request: ScaleRequest) -> ScaleResult | None:
    """Returns the result of scaling a model to ``request.replicas`` (may be awaitable), or None."""
