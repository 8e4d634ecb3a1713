"""The connection to Consul for fleet state (``state.consul``), and whether it is usable now.

:class:`ConsulStore` holds one py-consul asyncio client of the ``consul`` section's agent
(its ACL token, sent on every call) and follows the same rules as the Redis store:

* nothing on the request path calls Consul: backend health is written by a task and read by
  a blocking watch, leadership is renewed by another;
* each non-blocking call runs under :data:`CALL_TIMEOUT_S`; the first failure marks the store
  *down* (one warning line, ``switchgear_state_consul_up`` 0, an error counted by operation);
  the next successful call marks it *up* again (one info line).

Keys live under ``<consul.kv_prefix>fleet/<state.key_prefix>/``; a part that is not plain
(``[A-Za-z0-9@._:-]``) is replaced by its SHA-1, and every value names its backend or model,
so nothing depends on how an agent escapes a key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Awaitable
from typing import Any, TypeVar

from switchgear.discovery.consul_client import ErrorKind, classify, make_client
from switchgear.settings.consul import ConsulSettings
from switchgear.settings.state import StateSettings
from switchgear.state.metrics import StateMetrics

log = logging.getLogger("switchgear.state")

T = TypeVar("T")

#: Bound of one non-blocking Consul call (a write may wait for the Raft commit).
CALL_TIMEOUT_S = 5.0

_PLAIN = re.compile(r"^[A-Za-z0-9@._:-]+$")


def key_part(name: str) -> str:
    return name if _PLAIN.match(name) else "h-" + hashlib.sha1(name.encode()).hexdigest()


class ConsulStore:
    def __init__(
        self, state: StateSettings, consul: ConsulSettings, metrics: StateMetrics, member: str
    ) -> None:
        self.state, self.settings, self.metrics, self.member = state, consul, metrics, member
        self.token = consul.token
        self.root = f"{consul.kv_prefix or ''}fleet/{state.key_prefix}/"
        self.up = False
        self._ever_up = False
        self._refused: set[tuple[str, str]] = set()
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The py-consul client (made on first use, inside the running loop)."""
        if self._client is None:
            self._client = make_client(self.settings, token=self.token)
        return self._client

    def key(self, *parts: str) -> str:
        return self.root + "/".join(parts)

    def failed(self, op: str, exc: BaseException) -> None:
        self.metrics.error(op)
        if self.up:
            log.warning(
                "Consul unreachable for fleet state (%s, %s: %s); health changes apply here "
                "only until it answers",
                op,
                classify(exc).value,
                exc.__class__.__name__ if not str(exc) else exc,
            )
        if classify(exc) is ErrorKind.ACL and (op, str(exc)) not in self._refused:
            self._refused.add((op, str(exc)))  # once per refusal: the retries would repeat it
            log.error(
                "Consul refused fleet state (%s): %s (the token needs key:write on %s and "
                "session:write on the agent's node)",
                op,
                exc,
                self.root,
            )
        self.up = False
        self.metrics.consul_up.set(0)

    def answered(self) -> None:
        if not self.up:
            if self._ever_up:
                log.info("Consul answers again; shared backend health resumes")
            self._ever_up = True
        self.up = True
        self.metrics.consul_up.set(1)

    async def call(self, op: str, aw: Awaitable[T], *, limit_s: float | None = CALL_TIMEOUT_S) -> T:
        """Await one Consul call; a failure marks the store down and raises."""
        try:
            async with asyncio.timeout(limit_s):
                result = await aw
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failed(op, exc)
            raise
        self.answered()
        return result

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
