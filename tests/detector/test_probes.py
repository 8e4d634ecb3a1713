"""The probe trickle: one probe per interval, a burst for a suspect, results observed."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from switchgear.detector.probes import Prober
from switchgear.settings.detector import OutlierSettings
from switchgear.types import Backend, Observation


async def test_a_suspect_gets_a_burst_of_probes_and_every_result_is_observed(
    aiohttp_server: Any,
) -> None:
    bodies: list[dict[str, Any]] = []
    statuses = iter([200, 500, 200, 200])

    async def chat(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.json_response({"ok": True}, status=next(statuses))

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    server = await aiohttp_server(app)
    seen: list[Observation] = []
    backend = Backend(id="b1", model="m", url=str(server.make_url("/v1")))
    async with aiohttp.ClientSession() as session:
        prober = Prober(session, OutlierSettings(suspect_probes=3), seen.append)
        prober.probe(backend, burst=True)
        prober.probe(backend, burst=True)  # one in flight already: nothing more
        await asyncio.gather(*prober._inflight.values())
        assert [o.status for o in seen] == [200, 500, 200]
        assert all(b["max_tokens"] == 1 and b["model"] == "m" for b in bodies)
        prober.probe(backend)  # within probe_interval_s of the last: nothing
        assert prober._inflight == {} and prober.sent == 3
        prober._last.clear()
        prober.probe(backend)  # not a suspect: one probe
        await asyncio.gather(*prober._inflight.values())
        assert prober.sent == 4 and len(bodies) == 4
        await prober.aclose()
