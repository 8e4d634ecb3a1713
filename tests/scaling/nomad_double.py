"""A test double of Nomad's HTTP API parts the scaler uses, from the API reference:

- ``GET /v1/job/:job_id`` → the job (``ID``, ``Namespace``, ``TaskGroups[].Name/Count``);
  404 ``job not found`` as text;
- ``POST /v1/job/:job_id/scale`` with ``{"Count", "Target": {"Group"}, "Message",
  "PolicyOverride"}`` → ``{"EvalID", "EvalCreateIndex", "JobModifyIndex", "Index", ...}``;
  an unknown group is 400;
- ``POST /v1/client/allocation/:alloc_id/restart`` → ``{}``; unknown allocation 404;
- ACLs: ``X-Nomad-Token``; a missing or unknown token is 403 ``Permission denied`` (Nomad
  answers 403 for ACL failures), and ``?namespace=`` selects the namespace.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class NomadDouble:
    token: str | None = "nomad-secret"
    jobs: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    allocs: set[str] = field(default_factory=set)
    restarts: list[str] = field(default_factory=list)
    scales: list[dict[str, object]] = field(default_factory=list)
    delay_s: float = 0.0
    index: int = 10

    def _denied(self, request: web.Request) -> web.Response | None:
        if self.token is not None and request.headers.get("X-Nomad-Token") != self.token:
            return web.Response(status=403, text="Permission denied")
        return None

    def _job(self, request: web.Request) -> tuple[tuple[str, str], dict[str, int]] | None:
        key = (request.query.get("namespace", "default"), request.match_info["job_id"])
        return (key, self.jobs[key]) if key in self.jobs else None

    async def read_job(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay_s)  # a slow API server, not synchronisation
        if (denied := self._denied(request)) is not None:
            return denied
        found = self._job(request)
        if found is None:
            return web.Response(status=404, text="job not found")
        (ns, job_id), groups = found
        return web.json_response({
            "ID": job_id, "Name": job_id, "Namespace": ns, "Type": "service",
            "Version": self.index, "JobModifyIndex": self.index,
            "TaskGroups": [{"Name": g, "Count": c, "Tasks": [{"Name": "worker"}]}
                           for g, c in groups.items()],
        })  # fmt: skip

    async def scale(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay_s)
        if (denied := self._denied(request)) is not None:
            return denied
        found = self._job(request)
        if found is None:
            return web.Response(status=404, text="job not found")
        _key, groups = found
        body = await request.json()
        self.scales.append(body)
        group = (body.get("Target") or {}).get("Group")
        if group not in groups:
            return web.Response(status=400, text=f"task group {group!r} not found in job")
        if body.get("Count") is not None:
            groups[group] = int(body["Count"])
        self.index += 1
        return web.json_response({"EvalID": str(uuid.uuid4()), "EvalCreateIndex": self.index,
                                  "JobModifyIndex": self.index, "Index": self.index,
                                  "Warnings": "", "LastContact": 0, "KnownLeader": False})  # fmt: skip

    async def restart(self, request: web.Request) -> web.Response:
        if (denied := self._denied(request)) is not None:
            return denied
        alloc = request.match_info["alloc_id"]
        if alloc not in self.allocs:
            return web.Response(status=404, text="Unknown allocation")
        self.restarts.append(alloc)
        return web.json_response({})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/job/{job_id}", self.read_job)
        app.router.add_post("/v1/job/{job_id}/scale", self.scale)
        app.router.add_post("/v1/client/allocation/{alloc_id}/restart", self.restart)
        return app
