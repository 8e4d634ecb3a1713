"""Fault injection for end-to-end tests of the detector: delay, errors, memory growth.

Set with ``POST /admin/faults`` (admin key). The memory ballast grows in a background task
of the app's cleanup context and is released when the leak rate goes back to zero.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field


class Faults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delay_ms: float = Field(default=0.0, ge=0, le=600_000)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    leak_mb_per_s: float = Field(default=0.0, ge=0, le=1024)
    ballast_mb: float = 0.0

    def should_fail(self) -> bool:
        return self.error_rate > 0 and random.random() < self.error_rate


async def ballast_ctx(app: web.Application) -> AsyncIterator[None]:
    from switchgear.worker.keys import FAULTS

    ballast: list[bytearray] = []

    async def grow() -> None:
        while True:
            await asyncio.sleep(1.0)
            faults = app[FAULTS]
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
