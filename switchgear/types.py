"""Typed values passed between switchgear's parts (proxy, discovery, plugins, worker, detector).

Everything here is a plain dataclass or Protocol with no behaviour beyond small helpers, so
every part may import it without pulling in another part.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Endpoint = Literal["chat.completions", "completions", "embeddings"]


@dataclass(frozen=True, slots=True)
class Backend:
    """One replica that serves one model.

    ``url`` is the base URL of the backend's API (for OpenAI-compatible servers the part
    up to and including ``/v1``). ``protocol`` names the adapter that speaks to it.
    """

    id: str
    model: str
    url: str
    datacenter: str = "local"
    weight: float = 1.0
    api_key: str | None = None
    protocol: str = "openai"
    source: str = "static"
    meta: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What switchgear knows about a model: from config, the model catalogue or backend meta."""

    name: str
    context_length: int | None = None
    languages: tuple[str, ...] = ()
    fallback: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    cost: float = 1.0
    prompt_format: str | None = None
    supports_continuation: bool = False
    quantization: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RequestContext:
    """One client request as it moves through the gateway's hooks.

    ``requested_model`` is what the client asked for; ``model`` is the concrete model this
    context is for: the alias target while ``select_model`` runs, the routed model after it,
    and on each upstream attempt the model tried (every model of the fallback chain gets its
    own copy, :meth:`for_model`, sharing ``attributes``; no context is rewritten and
    restored). ``body`` is the body sent upstream (a resumed stream sends a continuation);
    ``request`` is the client's request as parsed at the edge and ``resolution`` how its
    model was resolved (both None in contexts built by hand, e.g. in tests).
    """

    request_id: str
    endpoint: Endpoint
    body: dict[str, Any]
    requested_model: str
    model: str
    stream: bool = False
    api_key_id: str | None = None
    route_rule: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    request: ParsedRequest | None = None
    resolution: ModelResolution | None = None

    def for_model(self, model: str) -> RequestContext:
        """This request, for one model of its chain (same body, request and attributes)."""
        return self._with(model, self.route_rule, self.resolution)

    def routed(self, resolution: ModelResolution) -> RequestContext:
        """This request once its model is resolved."""
        return self._with(resolution.model, resolution.rule, resolution)

    def _with(
        self, model: str, route_rule: str | None, resolution: ModelResolution | None
    ) -> RequestContext:
        # Called per request and per model tried: a direct call, some ten times faster than
        # dataclasses.replace. tests/proxy/test_request.py checks that every field is carried.
        return RequestContext(
            self.request_id,
            self.endpoint,
            self.body,
            self.requested_model,
            model,
            self.stream,
            self.api_key_id,
            route_rule,
            self.attributes,
            self.request,
            resolution,
        )


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The prompt router's choice: the model to use and the rule that chose it."""

    model: str
    rule: str


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """An HTTP request an adapter built for one backend."""

    method: str
    url: str
    json: Any
    headers: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Adapter(Protocol):
    """Speaks one backend protocol. Requests and responses are OpenAI-shaped on our side.

    ``prepare`` builds the upstream request; ``decode`` turns a non-streaming upstream
    body into an OpenAI response; ``stream`` yields OpenAI chunk objects (dicts) read from
    a streaming upstream response, skipping (and logging) malformed frames.
    """

    name: str

    def prepare(
        self, backend: Backend, ctx: RequestContext, body: dict[str, Any]
    ) -> PreparedRequest: ...

    def decode(self, backend: Backend, ctx: RequestContext, payload: Any) -> dict[str, Any]: ...

    def stream(
        self, backend: Backend, ctx: RequestContext, lines: AsyncIterator[bytes]
    ) -> AsyncIterator[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class Observation:
    """One finished upstream attempt, as the gateway saw it (input to metrics and the detector)."""

    backend_id: str
    model: str
    datacenter: str
    status: int
    latency_s: float
    ttft_s: float | None = None
    completion_tokens: int = 0
    error: str | None = None
    ts: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one answer: as the backend reported them, else as the gateway counted."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @classmethod
    def of(cls, usage: object) -> Usage | None:
        """The tokens of a ``usage`` object: chat's ``prompt_tokens`` / ``completion_tokens``
        or the Responses API's ``input_tokens`` / ``output_tokens``; None when it has neither.
        """
        if type(usage) is not dict and not isinstance(usage, Mapping):  # dict: no ABC check
            return None
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        if not isinstance(prompt, int) and not isinstance(completion, int):
            return None
        return cls(
            prompt if isinstance(prompt, int) else 0,
            completion if isinstance(completion, int) else 0,
        )


@dataclass(frozen=True, slots=True)
class AnomalyEvent:
    """An anomaly on one metric of one backend (or worker), opened and closed with hysteresis."""

    id: str
    metric: str
    score: float
    started_at: float
    backend_id: str | None = None
    model: str | None = None
    ended_at: float | None = None
    contributions: Mapping[str, float] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return self.ended_at is None


@dataclass(frozen=True, slots=True)
class Action:
    """Something the policy did in answer to an event, with the reason, for /admin/actions."""

    kind: str  # eject | readmit | fallback | restore | scale_up | scale_down | restart
    target: str
    reason: str
    event_id: str | None = None
    ts: float = field(default_factory=time.time)
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScaleRequest:
    """Ask a scaler for ``replicas`` replicas of ``model`` (``current`` are running now)."""

    model: str
    replicas: int
    current: int
    reason: str


@dataclass(frozen=True, slots=True)
class ScaleResult:
    """What a scaler did: the replica count it reached and the backends it started or stopped."""

    model: str
    replicas: int
    started: tuple[str, ...] = ()
    stopped: tuple[str, ...] = ()
    #: Why the scaler could not act (API down, denied, unknown target); None on success.
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A client's OpenAI request, parsed and validated once at the gateway's edge.

    ``body`` is the JSON object to forward: unknown fields kept, ``max_tokens`` /
    ``max_completion_tokens`` already lowered to the gateway's cap. ``max_tokens`` is the
    completion cap the client set (``max_completion_tokens``, else ``max_tokens``).
    ``text`` is the prompt's text (chat messages, ``prompt`` or ``input``),
    ``last_user_text`` the last user message's; ``prompt_tokens`` the tokenizer-free
    estimate of :mod:`switchgear.proxy.text`, computed once for the router and the rate
    limiter. A Responses API request is parsed as its chat translation; ``responses`` keeps
    what the client sent, for backends that speak that API. Built by
    :mod:`switchgear.proxy.request`.
    """

    endpoint: Endpoint
    model: str
    body: dict[str, Any]
    stream: bool = False
    max_tokens: int | None = None
    n: int | None = None
    messages: tuple[dict[str, Any], ...] = ()
    text: str = ""
    last_user_text: str = ""
    capabilities: tuple[str, ...] = ()
    prompt_tokens: int = 0
    #: The client's Responses API body when ``body`` is its chat translation, else None.
    responses: dict[str, Any] | None = None


@dataclass(slots=True)
class ModelResolution:
    """How a request's model was resolved, and who answered.

    ``requested`` is the name the client sent; ``model`` the model chosen for it (through
    aliases and ``select_model``), the head of its fallback chain; ``rule`` what chose it
    (None when the name was used as is). ``answered_model`` and ``backend`` are set once,
    when the upstream answer arrived (a fallback model may have answered; a stream resumed
    elsewhere keeps the first).
    """

    requested: str
    model: str
    rule: str | None = None
    answered_model: str | None = None
    backend: Backend | None = None

    def answered(self, model: str, backend: Backend) -> None:
        self.answered_model, self.backend = model, backend
