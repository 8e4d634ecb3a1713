"""A trickle of probe requests to replicas with too few samples to be judged.

The balancer moves traffic away from a slow replica, so it may get too few requests for
the outlier rule (:mod:`switchgear.detector.outliers`) to judge it. ``Prober.probe`` sends it
one small chat completion (``max_tokens: 1``), at most one in flight per replica and one
per ``probe_interval_s``; a *suspect* (a failure in its window, or admitted and slower
than its peers) gets a burst of ``suspect_probes`` back to back instead, so that a replica
failing 20% of its requests, or one just turned slow, which the balancer starves, is judged
on enough requests within 10 s. Each result (a timeout counts as a failed request as slow
as the timeout) is handed to ``on_result`` as an :class:`~switchgear.types.Observation`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import aiohttp

from switchgear.settings.detector import OutlierSettings
from switchgear.types import Backend, Observation


class Prober:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: OutlierSettings,
        on_result: Callable[[Observation], None],
    ) -> None:
        self.session, self.s, self.on_result = session, settings, on_result
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._last: dict[str, float] = {}
        self.sent = 0

    def probe(self, backend: Backend, *, burst: bool = False) -> None:
        """Start a probe of ``backend`` (``suspect_probes`` of them one after the other when
        ``burst``) unless one is in flight or one started recently."""
        now = time.monotonic()
        if backend.id in self._inflight or now - self._last.get(backend.id, -1e9) < (
            self.s.probe_interval_s
        ):
            return
        self._last[backend.id] = now
        count = self.s.suspect_probes if burst else 1
        task = asyncio.create_task(
            self._burst(backend, count), name=f"switchgear-probe-{backend.id}"
        )
        self._inflight[backend.id] = task
        task.add_done_callback(lambda _: self._inflight.pop(backend.id, None))

    async def _burst(self, backend: Backend, count: int) -> None:
        for _ in range(count):
            await self._one(backend)

    async def _one(self, backend: Backend) -> None:
        body = {
            "model": backend.model,
            "messages": [{"role": "user", "content": "ping"}],
            "max_tokens": 1,
        }
        headers = {"Authorization": f"Bearer {backend.api_key}"} if backend.api_key else {}
        timeout = aiohttp.ClientTimeout(total=self.s.probe_timeout_s)
        url = backend.url.rstrip("/") + "/chat/completions"
        started = time.monotonic()
        status, error = 0, None
        try:
            async with self.session.post(
                url, json=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = type(exc).__name__
        self.sent += 1
        self.on_result(
            Observation(
                backend_id=backend.id,
                model=backend.model,
                datacenter=backend.datacenter,
                status=status,
                latency_s=time.monotonic() - started,
                error=error,
            )
        )

    async def aclose(self) -> None:
        tasks = list(self._inflight.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
