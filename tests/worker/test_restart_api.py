"""``POST /admin/restart``: the worker reloads its engine; requests in flight finish."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from switchgear.worker.keys import SLOT
from tests.worker.conftest import admin_headers, worker_settings


async def test_restart_reloads_the_engine_and_requests_in_flight_finish(
    start_worker: Any, tiny: Path
) -> None:
    client = await start_worker(worker_settings(tiny))
    slot = client.app[SLOT]
    before = await slot.current()

    async def one() -> int:
        body = {"prompt": "hello", "max_tokens": 3}
        resp = await client.post("/v1/completions", json=body)
        return int(resp.status)

    inflight = [asyncio.create_task(one()) for _ in range(4)]
    resp = await client.post("/admin/restart", headers=admin_headers())
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["ok"] is True
    assert await asyncio.gather(*inflight) == [200] * 4
    assert await slot.current() is not before
    assert await one() == 200
    denied = await client.post("/admin/restart")
    assert denied.status == 401
    assert (await denied.json())["error"]["type"]
