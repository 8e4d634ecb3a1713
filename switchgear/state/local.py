"""Rate-limit buckets of one process: the embedded default, and the fallback while Redis is down.

Each key has a requests bucket and a tokens bucket that hold up to one minute of allowance
and refill continuously (a token bucket; the Redis store's GCRA is the same rule written
as a theoretical arrival time). ``share`` divides every limit: while the shared store is
unreachable, each of N processes allows ``limit / N``, so the fleet as a whole stays near
the limit instead of multiplying it.

Memory: one entry per key seen; past :data:`MAX_KEYS` entries, full buckets (idle keys) are
dropped, so an open gateway hit from many addresses stays bounded.
"""

from __future__ import annotations

import time

from switchgear.settings.gateway import RateLimit

MAX_KEYS = 10_000

#: (which limit refused: "requests" or "tokens", seconds until the request would fit)
Refusal = tuple[str, float]


class Bucket:
    __slots__ = ("capacity", "rate", "level", "at")

    def __init__(self, per_minute: float) -> None:
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
    __slots__ = ("requests", "tokens", "share")

    def __init__(self, limit: RateLimit, share: int = 1) -> None:
        rpm, tpm = limit.requests_per_minute, limit.tokens_per_minute
        self.share = share
        # A share is never below one request: a 1/minute limit on 4 processes still admits.
        self.requests = Bucket(max(1.0, rpm / share)) if rpm else None
        self.tokens = Bucket(max(1.0, tpm / share)) if tpm else None


class LocalLimits:
    """The buckets of every key seen by this process."""

    def __init__(self) -> None:
        self._keys: dict[str, KeyLimits] = {}

    def _limits(self, key: str, limit: RateLimit, share: int) -> KeyLimits:
        found = self._keys.get(key)
        if found is None or found.share != share:
            if found is None and len(self._keys) >= MAX_KEYS:
                now = time.monotonic()
                for k, v in list(self._keys.items()):
                    if all(b is None or b.full(now) for b in (v.requests, v.tokens)):
                        del self._keys[k]
            found = self._keys[key] = KeyLimits(limit, share)
        return found

    def take(self, key: str, limit: RateLimit, tokens: int, share: int = 1) -> Refusal | None:
        """Take one request and ``tokens``; or (which limit, seconds to wait) when over it."""
        limits, now = self._limits(key, limit, share), time.monotonic()
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

    def settle(self, key: str, limit: RateLimit, estimated: int, used: int, share: int = 1) -> None:
        """Replace a request's estimate by the tokens it really used."""
        t = self._limits(key, limit, share).tokens
        if t is not None:
            t.level = min(t.capacity, t.level + min(estimated, t.capacity) - used)
