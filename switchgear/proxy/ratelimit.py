"""Per-key rate limits: requests and tokens per minute, for one process or a whole fleet.

Each API key (or, when /v1 is open, each client address) has a requests limit and a tokens
limit that allow one minute of burst and refill continuously. A request takes one request
and an estimate of its tokens up front (the parsed request's prompt estimate, see
:mod:`switchgear.proxy.text`, plus ``max_tokens`` / ``max_completion_tokens``); when it ends, the estimate is replaced by what it
used: the answer's usage, or for a stream without a usage chunk the streamed text counted by
:func:`switchgear.proxy.text.estimate_tokens`. A limit without room answers 429
``rate_limit_exceeded`` with ``Retry-After``: the seconds until the request would fit.

Where the buckets live is the fleet state's business (:mod:`switchgear.state`): in this
process by default; in Redis, shared by every process of the fleet, when ``state.redis_url``
is set. While Redis is unreachable, this process's local buckets answer, each limit divided
by the number of processes of the fleet (its share), and the switch is counted in
``switchgear_state_local_fallbacks``.
"""

from __future__ import annotations

from typing import Any

from switchgear.proxy.text import estimate_tokens as text_tokens
from switchgear.settings.gateway import RateLimit, RateLimits
from switchgear.state.fleet import FleetState
from switchgear.state.local import LocalLimits, Refusal
from switchgear.state.store import FAILURES
from switchgear.types import ParsedRequest


class RateLimiter:
    def __init__(self, settings: RateLimits, fleet: FleetState | None = None) -> None:
        self.settings = settings
        self.enabled = settings.enabled()
        self.fleet = fleet
        self.local = LocalLimits()

    def limits(self, key: str) -> RateLimit:
        return self.settings.for_key(key)

    def _shared(self) -> Any:
        fleet = self.fleet
        if fleet is None or fleet.limits is None or fleet.store is None or not fleet.store.up:
            return None
        return fleet.limits

    def _share(self) -> int:
        return self.fleet.share() if self.fleet is not None and self.fleet.shared else 1

    async def take(self, key: str, tokens: int) -> Refusal | None:
        """Take one request and ``tokens``; or (which limit, seconds to wait) when over it."""
        limit = self.settings.for_key(key)
        shared = self._shared()
        if shared is not None:
            try:
                refused: Refusal | None = await shared.take(
                    key, limit.requests_per_minute, limit.tokens_per_minute, tokens
                )
                return refused
            except FAILURES:
                pass
        if self.fleet is not None and self.fleet.shared:
            self.fleet.metrics.fallbacks.inc()
        return self.local.take(key, limit, tokens, self._share())

    async def settle(self, key: str, estimated: int, used: int) -> None:
        """Replace a request's estimate by the tokens it really used."""
        limit = self.settings.for_key(key)
        tpm = limit.tokens_per_minute
        if not tpm or used == estimated:
            return
        shared = self._shared()
        if shared is not None:
            try:
                # Awaited: a client's next request, on any gateway, sees this settlement.
                await shared.settle(key, tpm, estimated, used)
                return
            except FAILURES:
                pass
        self.local.settle(key, limit, estimated, used, self._share())


def token_cost(request: ParsedRequest | None) -> int:
    """Tokens a request takes up front: its prompt estimate plus its completion cap (at least 1).

    None (a body that is not a valid request) costs nothing: it is answered 400.
    """
    if request is None:
        return 0
    return max(1, request.prompt_tokens + (request.max_tokens or 0))


def streamed_tokens(request: ParsedRequest | None, text: str, chunks: int) -> int:
    """Tokens of a stream that reported no usage: the prompt's estimate plus the streamed
    text (at least one token per content chunk)."""
    prompt = request.prompt_tokens if request is not None else 0
    return prompt + max(text_tokens(text), chunks)
