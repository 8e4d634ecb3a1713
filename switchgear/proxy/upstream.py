"""Upstream calls: deadlines, retries across replicas, fallback chains, breaker bookkeeping.

Resource rules: one pooled ``aiohttp.ClientSession`` (owned by the app's cleanup_ctx) carries
every call. A non-streaming attempt releases its connection before returning; a streaming
answer owns its upstream response until :meth:`StreamAnswer.close`, which the relay always
calls. A cancelled handler (client gone) closes the upstream connection at once, so the
backend stops generating.

Rules, per model (``models.<name>.timeouts`` / ``.retries`` override the gateway's):

- ``ttft`` bounds the wait for the first byte of the answer: response headers and, for a
  stream, its first chunk. ``idle`` bounds each read after that; ``total`` the attempt.
- Connect errors, resets, 429, 500/502/503/504 and deadlines before the first byte are
  retried, on another replica when there is one, with exponential backoff and full jitter;
  a 429's or 503's Retry-After replaces the backoff, capped at ``retry_after_cap``.
- Other upstream errors pass through untouched and unretried. A context-length error goes
  to the first model of the fallback chain with a larger ``context_length``, or back.
- Retries spent or no healthy backend: the next model of ``fallback``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pluggy
from aiohttp.http_exceptions import HttpProcessingError

from switchgear.discovery.base import Registry
from switchgear.errors import (
    APIError,
    NoHealthyBackend,
    UpstreamError,
    UpstreamStatus,
    UpstreamTimeout,
)
from switchgear.plugins.manager import chain_sync, first_result_sync
from switchgear.proxy.answers import Answer, Attempt, StreamAnswer
from switchgear.proxy.breaker import BackendState
from switchgear.proxy.policy import ModelPolicy, Policies, is_context_error
from switchgear.types import Adapter, Backend, Observation, PreparedRequest, RequestContext

RETRY_STATUSES = frozenset({500, 502, 503, 504})


class _Retryable(Exception):
    def __init__(
        self, error: APIError, reason: str, *, retry_after: float | None = None, fault: bool = True
    ):
        self.error, self.reason, self.retry_after, self.fault = error, reason, retry_after, fault


class _ModelFailed(Exception):
    def __init__(self, error: APIError, *, context: bool = False) -> None:
        self.error, self.context = error, context


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
        error: APIError | None = None
        min_context: int | None = None
        for model in models if models is not None else self.policies.chain(first):
            pol = self.policies.get(model)
            if min_context is not None and (pol.context_length or 0) <= min_context:
                continue
            try:
                answer = await self._try_model(ctx.for_model(model), pol, exclude)
            except _ModelFailed as exc:
                if exc.context:
                    min_context = pol.context_length or 0
                    error = exc.error
                elif error is None or not isinstance(exc.error, NoHealthyBackend):
                    error = exc.error if min_context is None else error
                continue
            answer.fallback_from = first if model != first else None
            return answer
        raise error or NoHealthyBackend(f"no healthy backend for model {first}")

    async def _try_model(
        self, ctx: RequestContext, pol: ModelPolicy, exclude: frozenset[str]
    ) -> Answer | StreamAnswer:
        model, state = ctx.model, self.state
        candidates = [
            b for b in self.registry.backends(model) if state.healthy(b.id) and b.id not in exclude
        ]
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
        tried: set[str] = set()
        error: APIError | None = None
        delay = 0.0
        for attempt in range(pol.retries.attempts):
            backend = _pick(candidates, tried, state)
            if backend is None:
                break
            if attempt:
                self.on_retry(model)
                if delay > 0:
                    await asyncio.sleep(delay)
            tried.add(backend.id)
            try:
                return await self._attempt(ctx, backend, pol)
            except _Retryable as exc:
                error = exc.error
                if exc.retry_after is not None:
                    delay = min(exc.retry_after, pol.retries.retry_after_cap)
                else:
                    delay = (
                        min(pol.retries.backoff_max, pol.retries.backoff_base * 2**attempt)
                        * random.random()
                    )
        raise _ModelFailed(error or NoHealthyBackend(f"no healthy backend for model {model}"))

    async def _attempt(
        self, ctx: RequestContext, backend: Backend, pol: ModelPolicy
    ) -> Answer | StreamAnswer:
        """One call to one backend; its outcome is recorded once, on its :class:`Attempt`."""
        adapter = first_result_sync(self.pm, "adapter_for_backend", backend=backend)
        if adapter is None:
            raise _Retryable(
                UpstreamError(f"no adapter for protocol {backend.protocol!r}"),
                "adapter",
                fault=False,
            )
        body = dict(ctx.body)
        body["model"] = ctx.model
        body = chain_sync(self.pm, "rewrite_request", "body", ctx=ctx, body=body, backend=backend)
        prep = adapter.prepare(backend, ctx, body)
        att = Attempt(self.state, self.observe, backend, ctx)
        try:
            try:
                return await self._exchange(att, adapter, prep, pol)
            except UpstreamStatus:
                raise
            except (TimeoutError, aiohttp.ClientError, UpstreamError, HttpProcessingError) as exc:
                raise _transport_failure(exc, att) from None
        except _Retryable as exc:
            att.failed(exc.error.status, exc.reason, fault=exc.fault)
            raise
        except UpstreamStatus as exc:
            att.failed(exc.status, f"http_{exc.status}", fault=False)
            if exc.status == 400 and is_context_error(exc.payload):
                raise _ModelFailed(exc, context=True) from None
            raise
        except asyncio.CancelledError:
            att.failed(499, "cancelled", fault=False)
            raise
        except BaseException:
            att.failed(500, "internal", fault=False)
            raise

    async def _exchange(
        self, att: Attempt, adapter: Adapter, prep: PreparedRequest, pol: ModelPolicy
    ) -> Answer | StreamAnswer:
        """Send ``prep`` and read the answer; the response is closed unless a stream owns it."""
        ctx, backend = att.ctx, att.backend
        resp: aiohttp.ClientResponse | None = None
        handed_off = False
        try:
            async with asyncio.timeout(pol.timeouts.ttft):
                resp = await self.session.request(
                    prep.method,
                    prep.url,
                    data=orjson.dumps(prep.json),
                    headers=prep.headers,
                    timeout=pol.client_timeout,
                )
                att.headers_at()
                if resp.status >= 400:
                    await self._status_error(resp, backend)
                if ctx.stream:
                    answer = await _open_stream(att, adapter, resp)
                    handed_off = True
                    return answer
            raw = await resp.read()
            try:
                payload = adapter.decode(backend, ctx, orjson.loads(raw))
            except orjson.JSONDecodeError:
                raise UpstreamError(f"backend {backend.id} returned invalid JSON") from None
            payload = chain_sync(
                self.pm, "rewrite_response", "body", ctx=ctx, body=payload, backend=backend
            )
            resp.release()
            att.done(200, usage_tokens(payload))
            return Answer(att, payload)
        finally:
            if resp is not None and not handed_off:
                resp.close()

    async def _status_error(self, resp: aiohttp.ClientResponse, backend: Backend) -> None:
        raw = await resp.read()
        try:
            payload = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            payload = None
        status = resp.status
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
    chunks = adapter.stream(att.backend, att.ctx, resp.content.__aiter__())
    try:
        first = await anext(chunks, None)
    except BaseException:
        await chunks.aclose()  # type: ignore[attr-defined]
        raise
    att.first_token()
    return StreamAnswer(att, resp, chunks, first)


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


def _pick(candidates: list[Backend], tried: set[str], state: BackendState) -> Backend | None:
    """The first admitted replica not tried yet; when all were tried, the first admitted one."""
    for b in candidates:
        if b.id not in tried and state.admit(b.id):
            return b
    for b in candidates:
        if state.admit(b.id):
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
        n = usage.get("completion_tokens")
        if isinstance(n, int):
            return n
    return 0
