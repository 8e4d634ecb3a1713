"""A plugin implementing every hook, recording each call; used through a running gateway.

Register an instance: ``pm.register(Recorder(backend_url), name="recorder")``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from switchgear import hookimpl
from switchgear.discovery.base import Registry
from switchgear.types import (
    Action,
    AnomalyEvent,
    Backend,
    ModelInfo,
    PreparedRequest,
    RequestContext,
    RouteDecision,
    ScaleRequest,
    ScaleResult,
)


class UpperAdapter:
    """Protocol ``upper``: asks a completion server, answers in capitals (proves our adapter ran)."""

    name = "upper"

    def prepare(
        self, backend: Backend, ctx: RequestContext, body: dict[str, Any]
    ) -> PreparedRequest:
        prompt = body["messages"][-1]["content"]
        return PreparedRequest(
            "POST", backend.url + "/completions", {"model": body["model"], "prompt": prompt}
        )

    def decode(self, backend: Backend, ctx: RequestContext, payload: Any) -> dict[str, Any]:
        text = payload["choices"][0]["text"].upper()
        return {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": ctx.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
        }

    async def stream(
        self, backend: Backend, ctx: RequestContext, lines: AsyncIterator[bytes]
    ) -> AsyncIterator[dict[str, Any]]:
        raise NotImplementedError
        yield {}


class StaticSource:
    name = "recorder"

    def __init__(self, backends: tuple[Backend, ...]) -> None:
        self.backends = backends

    async def run(self, registry: Registry) -> None:
        registry.replace(self.name, self.backends)


class Recorder:
    def __init__(self, discovered_url: str | None = None) -> None:
        self.discovered_url = discovered_url
        self.calls: list[str] = []
        self.ordered: list[list[str]] = []

    @hookimpl
    async def startup(self, app: web.Application) -> None:
        self.calls.append("startup")

    @hookimpl
    async def shutdown(self, app: web.Application) -> None:
        self.calls.append("shutdown")

    @hookimpl
    def register_routes(self, register: Callable[[str, str, Callable[..., Any]], None]) -> None:
        async def ping(request: web.Request) -> web.Response:
            return web.json_response({"pong": True, "calls": self.calls})

        register("GET", "/recorder/ping", ping)

    @hookimpl
    def register_discovery(self, register: Callable[[Any], None], settings: Any) -> None:
        if self.discovered_url:
            register(
                StaticSource(
                    (
                        Backend(
                            "found-1",
                            "discovered-model",
                            self.discovered_url,
                            protocol="ollama",
                            source="recorder",
                        ),
                    )
                )
            )

    @hookimpl
    def select_model(
        self, ctx: RequestContext, models: Mapping[str, ModelInfo]
    ) -> RouteDecision | None:
        if ctx.requested_model == "recorder-alias":
            self.calls.append("select_model")
            return RouteDecision(sorted(models)[0], "recorder:first")
        return None

    @hookimpl
    def rewrite_request(
        self, ctx: RequestContext, body: dict[str, Any], backend: Backend
    ) -> dict[str, Any]:
        self.calls.append("rewrite_request")
        return {**body, "user": "rewritten-by-recorder"}

    @hookimpl
    def rewrite_response(
        self, ctx: RequestContext, body: dict[str, Any], backend: Backend
    ) -> dict[str, Any]:
        return {**body, "system_fingerprint": "recorder"}

    @hookimpl(tryfirst=True)
    def order_backends(
        self, ctx: RequestContext, backends: Sequence[Backend], stats: Any
    ) -> list[Backend]:
        ordered = sorted(backends, key=lambda b: b.id, reverse=True)
        self.ordered.append([b.id for b in ordered])
        return ordered

    @hookimpl
    def adapter_for_backend(self, backend: Backend) -> UpperAdapter | None:
        return UpperAdapter() if backend.protocol == "upper" else None

    # worker and detection hooks, exercised through the plugin manager

    @hookimpl
    def load_model(self, spec: Any) -> Any:
        return {"loaded": spec["path"]} if isinstance(spec, dict) and "path" in spec else None

    @hookimpl
    def quantize_model(self, bundle: Any, method: str, spec: Any) -> Any:
        return {**bundle, "quantization": method} if method == "test-int4" else None

    @hookimpl
    def verify_swap(self, current: Any, candidate: Any, settings: Any) -> Any:
        return {"gate": "recorder", "passed": candidate != "bad"}

    @hookimpl
    def register_detectors(self, register: Callable[[str, Callable[..., Any]], None]) -> None:
        register("recorder-threshold", lambda **kw: ("threshold", kw))

    @hookimpl
    async def on_anomaly(self, event: AnomalyEvent, gateway: Any) -> list[Action]:
        return [Action("eject", event.backend_id or "?", f"recorder saw {event.metric}", event.id)]

    @hookimpl
    def scale(self, request: ScaleRequest) -> ScaleResult | None:
        return (
            ScaleResult(request.model, request.replicas, started=("r2",))
            if request.model == "m"
            else None
        )
