"""The public plugin contract of switchgear: every hook a plugin may implement.

Plugin authors write::

    from switchgear import hookimpl

    @hookimpl
    def rewrite_request(ctx, body, backend):
        body.setdefault("user", ctx.request_id)
        return body

Calling rules (enforced by :mod:`switchgear.plugins.calls`; hooks are called as
``pm.hook.<name>(...)``, so ``firstresult``, ``tryfirst``/``trylast`` and wrappers behave as
pluggy defines them):

- an implementation that raises is logged with its plugin's name and skipped for that call,
  except :class:`~switchgear.errors.APIError`, raised on purpose to answer the client (e.g.
  the router's ``context_length_exceeded``);
- "pick one" hooks (``firstresult``) are synchronous: an implementation decides with a plain
  ``def`` and returns an object whose methods may be async (an adapter, a bundle), or for
  ``scale`` the awaitable that does the work. An ``async def`` implementation would always
  be picked, since its coroutine is not None;
- the hooks in :data:`AWAITABLE` may return awaitables; they are awaited afterwards, in call
  order, each bounded by the plugin timeout. Elsewhere an awaitable is logged and skipped;
- the hooks in :data:`CHAINED` thread one value through their implementations: each sees the
  previous one's result.

Built-in defaults are ``trylast`` so a third-party plugin wins. Every hook here has a heading
in ``docs/plugins.md`` equal to its signature and a test named ``test_hook_<name>``.

Argument types are imported only for type checking, so this module (and the machinery
around it) imports nothing above :mod:`switchgear.types`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from aiohttp import web

    from switchgear.detector.base import DetectorFactory
    from switchgear.detector.control import GatewayControl
    from switchgear.discovery.base import Registry
    from switchgear.plugins.host import Host
    from switchgear.proxy.breaker import BackendState
    from switchgear.settings import Settings
    from switchgear.settings.worker import ModelSpec
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
    from switchgear.worker.gates import GateResult, Subject, SwapContext
    from switchgear.worker.loading import ModelBundle

    #: What ``register_adapters`` accepts for a protocol: an adapter, or a factory that
    #: picks one per backend (e.g. by its prompt format) and returns None when it cannot.
    AdapterEntry = Adapter | Callable[[Backend], Adapter | None]


class DiscoverySource(Protocol):
    """What ``register_discovery`` registers: keeps its slice of a registry current until cancelled.

    It may also have ``async def preflight()`` (checked before its task starts) and
    ``on_models(callback)`` (model metadata it discovers); the gateway looks for both.
    """

    name: str

    async def run(self, registry: Registry) -> None: ...


PROJECT = "switchgear"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: Hooks whose implementations may return awaitables (awaited by the async helpers).
AWAITABLE: frozenset[str] = frozenset({"startup", "shutdown", "on_anomaly", "scale"})
#: Hooks that thread a value through their implementations: hook name -> argument name.
CHAINED: Mapping[str, str] = {"rewrite_request": "body", "rewrite_response": "body"}


# --- startup -----------------------------------------------------------------------------


@hookspec
def startup(app: web.Application, host: Host) -> Awaitable[None] | None:
    """Returns nothing (or an awaitable). Called once when the gateway or worker app starts.

    ``host`` is what the running program hands its plugins: its settings and, in the
    gateway, the backend registry (see :class:`~switchgear.plugins.host.Host`).
    """


@hookspec
def shutdown(app: web.Application) -> Awaitable[None] | None:
    """Returns nothing (or an awaitable). Called once when the app stops, before resources close."""


@hookspec
def register_routes(register: Callable[[str, str, Callable[..., Any]], None]) -> None:
    """Returns nothing; calls ``register(method, path, handler)`` for each extra aiohttp route."""


# --- discovery ---------------------------------------------------------------------------


@hookspec
def register_discovery(register: Callable[[DiscoverySource], None], settings: Settings) -> None:
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
    ctx: RequestContext, backends: Sequence[Backend], stats: BackendState
) -> list[Backend] | None:
    """Returns the backends in the order to try them (load balancing), or None to pass."""


@hookspec
def register_adapters(register: Callable[[str, AdapterEntry], None]) -> None:
    """Returns nothing; calls ``register(protocol, adapter)`` for each backend protocol it speaks.

    Collected once into a protocol → adapter map; the first registration of a protocol wins
    (built-ins are ``trylast``). ``adapter`` may be a factory ``(backend) -> Adapter | None``
    for a protocol whose adapter depends on the backend; it is resolved once per backend.
    """


@hookspec(firstresult=True)
def adapter_for_backend(backend: Backend) -> Adapter | None:
    """Returns the adapter that speaks ``backend.protocol``, or None when this plugin cannot.

    Kept for plugins written before ``register_adapters``: asked before the protocol map,
    once per backend (the answer is cached).
    """


# --- worker ------------------------------------------------------------------------------


@hookspec(firstresult=True)
def load_model(spec: ModelSpec) -> ModelBundle | None:
    """Returns a loaded model bundle for a worker model spec, or None to let another plugin load it."""


@hookspec(firstresult=True)
def quantize_model(bundle: ModelBundle, method: str, spec: ModelSpec) -> ModelBundle | None:
    """Returns the bundle quantized with ``method`` (e.g. int8-dynamic, quanto-int8, onnx), or None."""


@hookspec
def verify_swap(
    current: Subject, candidate: Subject, settings: SwapContext
) -> GateResult | list[GateResult] | None:
    """Returns a gate result (or list of them) judging a hot-swap candidate; None to abstain."""


# --- detection ---------------------------------------------------------------------------


@hookspec
def register_detectors(register: Callable[[str, DetectorFactory], None]) -> None:
    """Returns nothing; calls ``register(name, factory)`` for each anomaly detector it offers."""


@hookspec
def on_anomaly(
    event: AnomalyEvent, gateway: GatewayControl
) -> list[Action] | Awaitable[list[Action] | None] | None:
    """Returns the actions taken for an opened or closed anomaly event (may be awaitable)."""


@hookspec(firstresult=True)
def scale(request: ScaleRequest) -> ScaleResult | Awaitable[ScaleResult] | None:
    """Returns the scale result (or an awaitable of it) when this plugin scales the model, else None.

    Decide synchronously (a plain ``def``): returning None passes to the next plugin, while
    an awaitable takes the request and is awaited, bounded by the action timeout.
    """
