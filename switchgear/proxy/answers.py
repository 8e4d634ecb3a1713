"""What a successful upstream attempt hands back, and the bookkeeping of one attempt.

An :class:`Attempt` records exactly one outcome per upstream call: it decrements the
backend's outstanding count, feeds the breaker and EWMA, emits one Observation and, when
the request is traced, ends its client span. It carries the context of its own model
(``ctx.model``), which the answers it makes read.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp

from switchgear import telemetry
from switchgear.proxy.breaker import BackendState
from switchgear.proxy.deadline import Deadline
from switchgear.types import Backend, Observation, RequestContext

DRAIN_S = 0.5  # longest wait for the end of a stream after [DONE] before closing instead


class Attempt:
    __slots__ = (
        "state",
        "observe",
        "backend",
        "ctx",
        "t0",
        "headers_s",
        "ttft_s",
        "finished",
        "span",
    )

    def __init__(
        self,
        state: BackendState,
        observe: Callable[[Observation], None],
        backend: Backend,
        ctx: RequestContext,
    ):
        self.state, self.observe, self.backend, self.ctx = state, observe, backend, ctx
        self.t0 = time.perf_counter()
        self.headers_s: float | None = None
        self.ttft_s: float | None = None
        self.finished = False
        self.span = telemetry.attempt_span(backend, ctx)
        state.started(backend.id)

    @property
    def model(self) -> str:
        return self.ctx.model

    def outgoing(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        """The headers to send: ``headers`` plus ``traceparent`` when the request is traced."""
        return headers if self.span is None else self.span.inject(headers)

    def headers_at(self) -> None:
        self.headers_s = time.perf_counter() - self.t0

    def first_token(self) -> None:
        self.ttft_s = time.perf_counter() - self.t0
        if self.span is not None:
            self.span.first_token()

    def done(self, status: int, tokens: int = 0) -> None:
        if self.finished:
            return
        self.finished = True
        b = self.backend
        self.state.finished(b.id)
        self.state.success(b.id, self.headers_s)
        if self.span is not None:
            self.span.end(status, output_tokens=tokens)
        self.observe(
            Observation(
                b.id,
                self.model,
                b.datacenter,
                status,
                time.perf_counter() - self.t0,
                self.ttft_s,
                tokens,
            )
        )

    def failed(self, status: int, reason: str, *, fault: bool = True, tokens: int = 0) -> None:
        if self.finished:
            return
        self.finished = True
        b = self.backend
        self.state.finished(b.id)
        if fault:
            self.state.failure(b.id, reason)
        else:
            self.state.neutral(b.id)
        if self.span is not None:
            self.span.end(status, output_tokens=tokens, error=reason)
        self.observe(
            Observation(
                b.id,
                self.model,
                b.datacenter,
                status,
                time.perf_counter() - self.t0,
                self.ttft_s,
                tokens,
                reason,
            )
        )


class _Answered:
    """What both kinds of answer read from the attempt that made them."""

    __slots__ = ()
    attempt: Attempt

    @property
    def backend(self) -> Backend:
        return self.attempt.backend

    @property
    def model(self) -> str:
        return self.attempt.model

    @property
    def ctx(self) -> RequestContext:
        return self.attempt.ctx


class Answer(_Answered):
    """A complete non-streaming response body, from the attempt's backend and model."""

    __slots__ = ("attempt", "body", "fallback_from")

    def __init__(self, attempt: Attempt, body: dict[str, Any]) -> None:
        self.attempt, self.body = attempt, body
        self.fallback_from: str | None = None


class StreamAnswer(_Answered):
    """An open upstream stream whose first chunk already arrived; the relay must ``close`` it."""

    __slots__ = ("attempt", "resp", "chunks", "first", "fallback_from")

    def __init__(
        self,
        attempt: Attempt,
        resp: aiohttp.ClientResponse,
        chunks: AsyncIterator[dict[str, Any]],
        first: dict[str, Any] | None,
    ) -> None:
        self.attempt, self.resp, self.chunks, self.first = attempt, resp, chunks, first
        self.fallback_from: str | None = None

    async def close(self, *, complete: bool = False) -> None:
        """Release the upstream connection.

        After a complete stream (``[DONE]`` seen) the rest of the response (the chunked
        terminator) is read, briefly, so the connection goes back to the pool; otherwise the
        connection is closed, which also stops the backend's generation.
        """
        try:
            await self.chunks.aclose()  # type: ignore[attr-defined]
        finally:
            if complete and not self.resp.content.at_eof():
                try:
                    with Deadline(DRAIN_S):
                        while await self.resp.content.readany():
                            pass
                except (TimeoutError, aiohttp.ClientError):
                    complete = False
            if complete:
                self.resp.release()
            else:
                self.resp.close()
