"""The request bodies one gateway process holds at once (``limits.max_body_bytes_in_flight``).

A request body is held from the moment it is read until its answer is sent: the raw bytes
while parsing, the parsed body (which its upstream attempts, retries and continuations
reuse) until the handler returns. ``max_body_bytes`` bounds one body; this budget bounds
their sum, so a burst of large (vision) requests cannot exhaust the process's memory. Each
request reserves its ``Content-Length`` before the body is read (a chunked body, of unknown
length, reserves ``max_body_bytes``); a request that does not fit is answered 503 with
``Retry-After`` before a byte of its body is read.
"""

from __future__ import annotations


class BodyBudget:
    """Bytes reserved by the requests in flight, against a fixed total."""

    __slots__ = ("total", "used", "refused")

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self.refused = 0

    def take(self, n: int) -> bool:
        """Reserve ``n`` bytes; False (and nothing reserved) when they do not fit."""
        if self.used + n > self.total:
            self.refused += 1
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n
