"""Fault injection for end-to-end tests of the detector: delay, errors, memory growth, and
garbage-collection pauses.

Set with ``POST /admin/faults`` (admin key). The memory ballast grows in a background task
of the app's cleanup context and is released when the leak rate goes back to zero. The same
task makes the pauses: every ``pause_every_s`` it collects cyclic garbage on the event loop
for about ``pause_ms``, holding the GIL as a full collection of a large heap does, so the
whole worker stalls (a healthy worker's GC pause, which the detector must not act on).
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections.abc import AsyncIterator

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field


class Faults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delay_ms: float = Field(default=0.0, ge=0, le=600_000)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    leak_mb_per_s: float = Field(default=0.0, ge=0, le=1024)
    pause_ms: float = Field(default=0.0, ge=0, le=10_000)
    pause_every_s: float = Field(default=0.0, ge=0, le=3600)
    ballast_mb: float = 0.0  # reported, not set: the ballast held now
    pauses: int = 0  # reported, not set: the pauses made so far

    def set_from(self, body: Faults) -> None:
        """Take every setting of ``body`` (a ``POST``), keeping what is reported."""
        for name in type(self).model_fields.keys() - {"ballast_mb", "pauses"}:
            setattr(self, name, getattr(body, name))

    def should_fail(self) -> bool:
        return self.error_rate > 0 and random.random() < self.error_rate


def gc_pause(ms: float) -> None:
    """Collect freshly made cyclic garbage until about ``ms`` have passed (blocks the thread)."""
    started = time.perf_counter()
    while (time.perf_counter() - started) * 1000 < ms:
        junk: list[list[object]] = [[] for _ in range(20_000)]
        for a, b in zip(junk, junk[1:], strict=False):
            a.append(b)
            b.append(a)
        del junk
        gc.collect()


async def ballast_ctx(app: web.Application) -> AsyncIterator[None]:
    from switchgear.worker.keys import FAULTS

    ballast: list[bytearray] = []
    last_pause = time.monotonic()

    async def grow() -> None:
        nonlocal last_pause
        while True:
            await asyncio.sleep(1.0)
            faults = app[FAULTS]
            due = faults.pause_every_s > 0 and time.monotonic() - last_pause >= faults.pause_every_s
            if faults.pause_ms > 0 and due:
                gc_pause(faults.pause_ms)  # on the loop, on purpose: the fault is a stall
                faults.pauses += 1
                last_pause = time.monotonic()
            if faults.leak_mb_per_s > 0:
                ballast.append(bytearray(b"\x01" * int(faults.leak_mb_per_s * 2**20)))
            elif ballast:
                ballast.clear()
            faults.ballast_mb = sum(len(b) for b in ballast) / 2**20

    task = asyncio.create_task(grow(), name="fault-ballast")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    ballast.clear()
