"""Upstream calls: deadlines, retries across replicas, fallback chains, breaker bookkeeping.

Resource rules: one pooled ``aiohttp.ClientSession`` (owned by the app's cleanup_ctx) carries
every call. A non-streaming attempt releases its connection before returning; a streaming
answer owns its upstream response until :meth:`StreamAnswer.close`, which the relay always
calls. A cancelled handler (client gone) closes the upstream connection at once, so the
backend stops generating.

Rules, per model (``models.<name>.timeouts`` / ``.retries`` override the gateway's):

- ``ttft`` bounds the wait for the first byte of the answer: response headers and, for a
  stream, its first chunk (at most ``stream_ttft``). ``idle`` bounds each read after that;
  ``total`` the attempt. One request's budget (:mod:`switchgear.proxy.budget`) bounds all
  its attempts before the first byte, fallback models included.
- Connect errors, resets, 3xx, 429, 500/502/503/504 and deadlines before the first byte are
  retried, on another replica when there is one, with exponential backoff and full jitter;
  a 429's or 503's Retry-After replaces the backoff, capped at ``retry_after_cap``. A
  backend that missed its first-byte deadline is not tried again for the same request.
- Redirects are never followed: the client's body goes only to the backends of its model.
- Other upstream errors pass through untouched and unretried. A prompt longer than a
  model's known ``context_length`` (by the request's token estimate) is not sent to it; it
  and a backend's context-length error go to the next model of the fallback chain whose
  context is larger or unknown, or back as a 400.
- Retries spent or no healthy backend: the next model of ``fallback``.
- An answer of the other shape than asked (JSON to a stream request, SSE to a JSON one) is
  converted (:mod:`switchgear.proxy.shapes`).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pluggy
from aiohttp.http_exceptions import HttpProcessingError

from switchgear.bodies import outgoing_body
from switchgear.discovery.base import Registry
from switchgear.errors import (
    APIError,
    ContextLengthExceeded,
    NoHealthyBackend,
    UpstreamError,
    UpstreamStatus,
    UpstreamTimeout,
)
from switchgear.plugins.calls import acts_for
from switchgear.plugins.manager import adapter_for, chain_sync, first_result_sync
from switchgear.proxy import shapes, sselines
from switchgear.proxy.answers import Answer, Attempt, StreamAnswer
from switchgear.proxy.breaker import BackendState
from switchgear.proxy.budget import Budget, first_byte
from switchgear.proxy.deadline import Deadline
from switchgear.proxy.policy import ModelPolicy, Policies, is_context_error
from switchgear.types import Adapter, Backend, Observation, PreparedRequest, RequestContext

RETRY_STATUSES = frozenset({500, 502, 503, 504})
_TGI_CONTEXT = re.compile(r"`?inputs`? tokens.*must be <=|must have less than \d+ tokens", re.I)
#: Reasons after which a backend is not tried again within the same request.
_NO_RETRY_SAME = frozenset({"ttft_timeout", "connect_timeout"})


class _Retryable(Exception):
    def __init__(
        self, error: APIError, reason: str, *, retry_after: float | None = None, fault: bool = True
    ):
        self.error, self.reason, self.retry_after, self.fault = error, reason, retry_after, fault


class _ModelFailed(Exception):
    def __init__(self, error: APIError, *, context: bool = False) -> None:
        self.error, self.context = error, context


class _Failures:
    """What the models of one chain failed with, and which fallbacks are still worth trying.

    After a context-length error only models whose context is unknown or larger than every
    known context that was too small are tried, and that first error is what the client gets
    when none of them answers.
    """

    def __init__(self) -> None:
        self.error: APIError | None = None
        self.context_error = False
        self.too_small: int | None = None

    def skip(self, pol: ModelPolicy) -> bool:
        n, small = pol.context_length, self.too_small
        return self.context_error and n is not None and small is not None and n <= small

    def add(self, exc: _ModelFailed, pol: ModelPolicy) -> None:
        if exc.context:
            if pol.context_length is not None:
                self.too_small = max(self.too_small or 0, pol.context_length)
            if not self.context_error:
                self.error, self.context_error = exc.error, True
        elif self.error is None or not (
            self.context_error or isinstance(exc.error, NoHealthyBackend)
        ):
            self.error = exc.error


def _over_context(ctx: RequestContext, pol: ModelPolicy) -> _ModelFailed | None:
    """The context error for a prompt the model cannot take, judged before sending it."""
    limit, req = pol.context_length, ctx.request
    if limit is None or req is None or req.prompt_tokens <= limit:
        return None
    err = ContextLengthExceeded(
        f"This model's maximum context length is {limit} tokens; the prompt has about "
        f"{req.prompt_tokens} tokens",
        param="messages" if ctx.endpoint == "chat.completions" else "prompt",
    )
    return _ModelFailed(err, context=True)


@dataclass(slots=True)
class Upstream:
    """The gateway's upstream client: one per app, built by its cleanup context."""

    session: aiohttp.ClientSession
    pm: pluggy.PluginManager
    registry: Registry
    state: BackendState
    policies: Policies
    observe: Callable[[Observation], None]
    on_retry: Callable[[str], None]
    #: The scale-from-zero hold (``switchgear.proxy.coldstart``), bound by ``setup_scaling``.
    cold_start: Any = None

    async def run(
        self,
        ctx: RequestContext,
        *,
        models: list[str] | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> Answer | StreamAnswer:
        """Answer ``ctx`` from its model or the fallback chain; raises the APIError to send.

        ``models`` replaces the chain and ``exclude`` names backends not to use (a resumed
        stream must not go back to the backend that just failed it). Each model is tried
        with its own context (``ctx.for_model``); ``ctx`` itself is never changed.
        """
        first = ctx.model
        chain = models if models is not None else self.policies.chain(first)
        budget = Budget.of(self.policies.get(first).timeouts, stream=ctx.stream)
        failures = _Failures()
        for i, model in enumerate(chain):
            pol = self.policies.get(model)
            if failures.skip(pol):
                continue
            until = budget.model_deadline(last=i == len(chain) - 1)
            try:
                if (over := _over_context(ctx, pol)) is not None:
                    raise over
                answer = await self._try_model(ctx.for_model(model), pol, exclude, budget, until)
            except _ModelFailed as exc:
                failures.add(exc, pol)
                continue
            answer.fallback_from = first if model != first else None
            return answer
        raise failures.error or NoHealthyBackend(f"no healthy backend for model {first}")

    async def _try_model(
        self,
        ctx: RequestContext,
        pol: ModelPolicy,
        exclude: frozenset[str],
        budget: Budget,
        until: float,
    ) -> Answer | StreamAnswer:
        candidates = await self._candidates(ctx, pol, exclude)
        tried: set[str] = set()
        skip: set[str] = set()
        error: APIError | None = None
        delay = 0.0
        wait = first_byte(pol.timeouts, stream=ctx.stream)
        for attempt in range(pol.retries.attempts):
            backend = _pick(candidates, tried, self.state, skip)
            if backend is None:
                break
            if budget.attempt_timeout(wait, until) <= delay:
                self.state.neutral(backend.id)  # release a half-open probe it was admitted as
                break
            if attempt:
                self.on_retry(ctx.model)
                if delay > 0:
                    try:
                        await asyncio.sleep(delay)
                    except asyncio.CancelledError:
                        self.state.neutral(backend.id)
                        raise
            tried.add(backend.id)
            try:
                return await self._attempt(ctx, backend, pol, budget.attempt_timeout(wait, until))
            except _Retryable as exc:
                error = exc.error
                if exc.reason in _NO_RETRY_SAME:
                    skip.add(backend.id)
                delay = _delay(exc, pol, attempt)
        raise _ModelFailed(error or NoHealthyBackend(f"no healthy backend for model {ctx.model}"))

    async def _candidates(
        self, ctx: RequestContext, pol: ModelPolicy, exclude: frozenset[str]
    ) -> list[Backend]:
        """The model's healthy backends in the order to try them."""
        model, state = ctx.model, self.state
        candidates = [
            b for b in self.registry.backends(model) if state.healthy(b.id) and b.id not in exclude
        ]
        if not candidates and self.cold_start is not None:
            candidates = await self.cold_start.hold(model, exclude)
        if not candidates:
            raise _ModelFailed(NoHealthyBackend(f"no healthy backend for model {model}"))
        if len(candidates) > 1:
            # The registry lists the nearest datacenter first: balance within it, and keep
            # farther datacenters behind it, in order, for retries.
            near = [b for b in candidates if b.datacenter == candidates[0].datacenter]
            if len(near) > 1:
                ctx.attributes["balancing"] = pol.balancing
                ordered = first_result_sync(
                    self.pm, "order_backends", ctx=ctx, backends=near, stats=state
                )
                near = list(ordered) if ordered else near
            candidates = near + [b for b in candidates if b.datacenter != near[0].datacenter]
        return candidates

    async def _attempt(
        self, ctx: RequestContext, backend: Backend, pol: ModelPolicy, ttft: float
    ) -> Answer | StreamAnswer:
        """One call to one backend; its outcome is recorded once, on its :class:`Attempt`.

        A failure before the call (no adapter, a plugin's rewrite or ``prepare`` raising) judges
        nothing about the backend, but releases the half-open probe it may have been admitted as,
        so the backend is probed again by a later request.
        """
        try:
            adapter, prep = self._prepare(ctx, backend)
        except BaseException:
            self.state.neutral(backend.id)
            raise
        att = Attempt(self.state, self.observe, backend, ctx)
        try:
            try:
                return await self._exchange(att, adapter, prep, pol, ttft)
            except UpstreamStatus:
                raise
            except (TimeoutError, aiohttp.ClientError, UpstreamError, HttpProcessingError) as exc:
                raise _transport_failure(exc, att) from None
        except _Retryable as exc:
            att.failed(exc.error.status, exc.reason, fault=exc.fault)
            raise
        except UpstreamStatus as exc:
            att.failed(exc.status, f"http_{exc.status}", fault=False)
            if _says_context(exc.status, exc.payload):
                raise _ModelFailed(exc, context=True) from None
            raise
        except asyncio.CancelledError:
            att.failed(499, "cancelled", fault=False)
            raise
        except BaseException:
            att.failed(500, "internal", fault=False)
            raise

    def _prepare(self, ctx: RequestContext, backend: Backend) -> tuple[Adapter, PreparedRequest]:
        adapter = adapter_for(self.pm, backend)
        if adapter is None:
            raise _Retryable(
                UpstreamError(f"no adapter for protocol {backend.protocol!r}"),
                "adapter",
                fault=False,
            )
        body = dict(ctx.body)
        body["model"] = ctx.model
        if acts_for(self.pm, "rewrite_request", backend):
            body = chain_sync(
                self.pm, "rewrite_request", "body", ctx=ctx, body=body, backend=backend
            )
        return adapter, adapter.prepare(backend, ctx, body)

    async def _exchange(
        self, att: Attempt, adapter: Adapter, prep: PreparedRequest, pol: ModelPolicy, ttft: float
    ) -> Answer | StreamAnswer:
        """Send ``prep`` and read the answer; the response is closed unless a stream owns it."""
        ctx, backend = att.ctx, att.backend
        resp: aiohttp.ClientResponse | None = None
        handed_off = False
        try:
            with Deadline(ttft):
                resp = await self.session.request(
                    prep.method,
                    prep.url,
                    data=outgoing_body(orjson.dumps(prep.json)),
                    headers=att.outgoing(prep.headers),
                    timeout=pol.client_timeout,
                    allow_redirects=False,
                )
                att.headers_at()
                if resp.status >= 300:
                    await self._status_error(resp, backend)
                if ctx.stream and not shapes.is_json(resp):
                    answer = await _open_stream(att, adapter, resp)
                    handed_off = True
                    return answer
            payload = await self._body(att, adapter, resp)
            if acts_for(self.pm, "rewrite_response", backend):
                payload = chain_sync(
                    self.pm, "rewrite_response", "body", ctx=ctx, body=payload, backend=backend
                )
            resp.release()
            if ctx.stream:  # a JSON answer to a stream request: stream it
                handed_off = True
                return _replayed(att, resp, payload)
            att.done(200, usage_tokens(payload))
            return Answer(att, payload)
        finally:
            if resp is not None and not handed_off:
                resp.close()

    async def _body(
        self, att: Attempt, adapter: Adapter, resp: aiohttp.ClientResponse
    ) -> dict[str, Any]:
        """The whole answer as one OpenAI body: decoded JSON, or a stream collected."""
        ctx, backend = att.ctx, att.backend
        if not ctx.stream and shapes.is_sse(resp):
            chunks = adapter.stream(backend, ctx, sselines.lines(resp.content))
            try:
                return await shapes.collect(ctx, chunks, backend.id)
            finally:
                await chunks.aclose()  # type: ignore[attr-defined]
        raw = await resp.read()
        try:
            return adapter.decode(backend, ctx, orjson.loads(raw))
        except orjson.JSONDecodeError:
            raise UpstreamError(f"backend {backend.id} returned invalid JSON") from None

    async def _status_error(self, resp: aiohttp.ClientResponse, backend: Backend) -> None:
        raw = await resp.read()
        try:
            payload = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            payload = None
        status = resp.status
        if status < 400:  # a redirect: never followed, so the body goes nowhere else
            msg = f"backend {backend.id} answered a redirect (HTTP {status}), which is not followed"
            raise _Retryable(UpstreamError(msg), f"http_{status}")
        err = UpstreamStatus(status, payload, f"backend {backend.id} answered HTTP {status}")
        retry_after = _retry_after(resp.headers.get("Retry-After"))
        if retry_after is not None and status in (429, 503):
            err.headers["Retry-After"] = resp.headers["Retry-After"]
        if status == 429:
            raise _Retryable(err, "http_429", retry_after=retry_after, fault=False)
        if status in RETRY_STATUSES:
            raise _Retryable(
                err, f"http_{status}", retry_after=retry_after if status == 503 else None
            )
        raise err


async def _open_stream(
    att: Attempt, adapter: Adapter, resp: aiohttp.ClientResponse
) -> StreamAnswer:
    """The stream of ``resp`` once its first chunk arrived (within the ttft deadline)."""
    chunks = adapter.stream(att.backend, att.ctx, sselines.lines(resp.content))
    try:
        first = await anext(chunks, None)
    except BaseException:
        await chunks.aclose()  # type: ignore[attr-defined]
        raise
    att.first_token()
    return StreamAnswer(att, resp, chunks, first)


def _replayed(att: Attempt, resp: aiohttp.ClientResponse, body: dict[str, Any]) -> StreamAnswer:
    """A stream answer made of a complete JSON answer's chunks."""
    chunks = shapes.as_chunks(att.ctx, body, att.backend.id)
    att.first_token()
    return StreamAnswer(att, resp, shapes.replay(chunks[1:]), chunks[0])


def _says_context(status: int, payload: dict[str, Any] | None) -> bool:
    """Does an upstream error say the prompt exceeds the model's context?

    OpenAI's shape (``error.code`` / ``error.message``), vLLM's older top-level ``message``,
    and TGI's 422 with a string ``error`` (``inputs tokens + max_new_tokens must be <= N``).
    """
    if status not in (400, 413, 422) or payload is None:
        return False
    err = payload.get("error")
    message = err if isinstance(err, str) else payload.get("message")
    if is_context_error(payload) or is_context_error({"error": {"message": message}}):
        return True
    return isinstance(message, str) and bool(_TGI_CONTEXT.search(message))


def _delay(exc: _Retryable, pol: ModelPolicy, attempt: int) -> float:
    """The wait before the next attempt: Retry-After when given, else jittered backoff."""
    if exc.retry_after is not None:
        return float(min(exc.retry_after, pol.retries.retry_after_cap))
    backoff: float = min(pol.retries.backoff_max, pol.retries.backoff_base * 2**attempt)
    return backoff * random.random()


def _transport_failure(exc: BaseException, att: Attempt) -> _Retryable:
    """The retryable error for a call that failed before its answer was complete."""
    bid = att.backend.id
    if isinstance(exc, TimeoutError):
        answered = att.ttft_s if att.ctx.stream else att.headers_s
        reason = "ttft_timeout" if answered is None else "timeout"
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            reason = "connect_timeout"
        return _Retryable(UpstreamTimeout(f"backend {bid} timed out ({reason})"), reason)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _Retryable(UpstreamError(f"cannot connect to backend {bid}"), "connect")
    if isinstance(exc, aiohttp.ClientError):
        return _Retryable(UpstreamError(f"connection to backend {bid} was lost"), "reset")
    if isinstance(exc, UpstreamError):
        return _Retryable(exc, "bad_response")
    # e.g. an SSE line longer than the read buffer
    return _Retryable(UpstreamError(f"backend {bid} sent a malformed response"), "bad_response")


def _pick(
    candidates: list[Backend], tried: set[str], state: BackendState, skip: set[str]
) -> Backend | None:
    """The first admitted replica not tried yet; when all were tried, the first admitted one.

    Replicas in ``skip`` (they missed a first-byte deadline) are not picked again.
    """
    for b in candidates:
        if b.id not in tried and state.admit(b.id):
            return b
    for b in candidates:
        if b.id not in skip and state.admit(b.id):
            return b
    return None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: use the normal backoff


def usage_tokens(payload: dict[str, Any]) -> int:
    usage = payload.get("usage")
    if isinstance(usage, dict):
        n = usage.get("completion_tokens", usage.get("output_tokens"))  # chat, or Responses
        if isinstance(n, int):
            return n
    return 0
