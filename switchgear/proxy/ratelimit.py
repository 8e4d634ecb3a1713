"""Per-key rate limits: token buckets for requests and tokens per minute.

Each API key (or, when /v1 is open, each client address) has two buckets that hold up to one
minute of allowance and refill continuously. A request takes one request and an estimate of
its tokens up front (the parsed request's prompt estimate, see :mod:`switchgear.proxy.text`,
plus ``max_tokens`` / ``max_completion_tokens``); when the answer reports its usage, the
estimate is replaced by the real count. A bucket without room answers 429 ``rate_limit_exceeded`` with ``Retry-After``:
the seconds until the request would fit.

Memory: one entry per key seen; past :data:`MAX_KEYS` entries, full buckets (idle keys) are
dropped, so an open gateway hit from many addresses stays bounded.
"""

from __future__ import annotations

import time

from switchgear.settings.gateway import RateLimit, RateLimits
from switchgear.types import ParsedRequest

MAX_KEYS = 10_000


class Bucket:
    __slots__ = ("capacity", "rate", "level", "at")

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.at = time.monotonic()

    def refill(self, now: float) -> float:
        self.level = min(self.capacity, self.level + (now - self.at) * self.rate)
        self.at = now
        return self.level

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` fits (0 when it fits now); never more than one minute."""
        need = min(amount, self.capacity)
        level = self.refill(now)
        return 0.0 if level >= need else (need - level) / self.rate

    def full(self, now: float) -> bool:
        return self.refill(now) >= self.capacity


class KeyLimits:
    __slots__ = ("requests", "tokens")

    def __init__(self, limit: RateLimit) -> None:
        rpm, tpm = limit.requests_per_minute, limit.tokens_per_minute
        self.requests = Bucket(rpm) if rpm else None
        self.tokens = Bucket(tpm) if tpm else None


class RateLimiter:
    def __init__(self, settings: RateLimits) -> None:
        self.settings = settings
        self.enabled = settings.enabled()
        self._keys: dict[str, KeyLimits] = {}

    def _limits(self, key: str) -> KeyLimits:
        found = self._keys.get(key)
        if found is None:
            if len(self._keys) >= MAX_KEYS:
                now = time.monotonic()
                for k, v in list(self._keys.items()):
                    if all(b is None or b.full(now) for b in (v.requests, v.tokens)):
                        del self._keys[k]
            found = self._keys[key] = KeyLimits(self.settings.for_key(key))
        return found

    def take(self, key: str, tokens: int) -> tuple[str, float] | None:
        """Take one request and ``tokens``; or (which limit, seconds to wait) when over it."""
        limits, now = self._limits(key), time.monotonic()
        r, t = limits.requests, limits.tokens
        if r is not None and (wait := r.wait_for(1, now)) > 0:
            return "requests", wait
        if t is not None and tokens and (wait := t.wait_for(tokens, now)) > 0:
            return "tokens", wait
        if r is not None:
            r.level -= 1
        if t is not None:
            t.level -= min(tokens, t.capacity)  # a huge max_tokens costs one minute at most
        return None

    def settle(self, key: str, estimated: int, used: int) -> None:
        """Replace a request's estimate by the tokens it really used."""
        t = self._limits(key).tokens
        if t is not None:
            t.level = min(t.capacity, t.level + min(estimated, t.capacity) - used)

    def limits(self, key: str) -> RateLimit:
        return self.settings.for_key(key)


def token_cost(request: ParsedRequest | None) -> int:
    """Tokens a request takes up front: its prompt estimate plus its completion cap (at least 1).

    None (a body that is not a valid request) costs nothing: it is answered 400.
    """
    if request is None:
        return 0
    return max(1, request.prompt_tokens + (request.max_tokens or 0))
