"""Nomad: a model's replica count is the ``Count`` of a task group, read from the job
(``GET /v1/job/:job_id``) and set with ``POST /v1/job/:job_id/scale``; a restart is
``POST /v1/client/allocation/:alloc_id/restart`` (the backend id is the allocation id).
The ACL token goes in ``X-Nomad-Token``; ``namespace`` and ``region`` are query parameters.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from switchgear.orchestrators import OrchestratorError
from switchgear.settings.scaling import NomadScaling


class NomadOrchestrator:
    name = "nomad"

    def __init__(self, cfg: NomadScaling, session: aiohttp.ClientSession | None = None) -> None:
        self.cfg = cfg
        self._session = session
        self._own_session = session is None

    def knows(self, model: str) -> bool:
        return model in self.cfg.targets

    def token(self) -> str | None:
        cfg = self.cfg
        if cfg.token_file:
            try:
                return Path(cfg.token_file).read_text().strip()
            except OSError as exc:
                raise OrchestratorError(
                    "config", f"Nomad token_file {cfg.token_file}: {exc.strerror}"
                ) from None
        token = os.environ.get(cfg.token_env) if cfg.token_env else None
        if not token and cfg.acl:
            where = f"${cfg.token_env}" if cfg.token_env else "token_env or token_file"
            raise OrchestratorError("config", f"Nomad ACL token missing: set {where}")
        return token or None

    def _params(self) -> dict[str, str]:
        p = {"namespace": self.cfg.namespace, "region": self.cfg.region}
        return {k: v for k, v in p.items() if v}

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"X-Nomad-Token": t} if (t := self.token()) else {}
        url = self.cfg.address.rstrip("/") + path
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout_s)
        what = f"Nomad {method} {path}"
        try:
            async with self._session.request(method, url, json=body, headers=headers,
                                             params=self._params(), timeout=timeout) as resp:  # fmt: skip
                if resp.status == 200:
                    return await resp.json(content_type=None)
                text = (await resp.text()).strip()[:200]
        except TimeoutError:  # before ClientConnectionError: aiohttp's timeouts are both
            raise OrchestratorError(
                "timeout", f"{what}: no answer within {self.cfg.timeout_s:g}s"
            ) from None
        except aiohttp.ClientConnectionError as exc:
            raise OrchestratorError(
                "unreachable", f"Nomad API at {self.cfg.address}: {exc}"
            ) from None
        kind = {401: "denied", 403: "denied", 404: "not_found", 409: "conflict"}.get(
            resp.status, "api"
        )
        raise OrchestratorError(kind, f"{what}: {resp.status} {text}")

    async def _group(self, model: str) -> dict[str, Any]:
        target = self.cfg.targets[model]
        job = await self._request("GET", f"/v1/job/{quote(target.job, safe='')}")
        for group in job.get("TaskGroups") or []:
            if group.get("Name") == target.group:
                return dict(group)
        raise OrchestratorError(
            "not_found", f"Nomad job {target.job} has no task group {target.group}"
        )

    async def check(self) -> None:
        for model in self.cfg.targets:
            await self._group(model)

    async def replicas(self, model: str) -> int:
        return int((await self._group(model)).get("Count") or 0)

    async def set_replicas(self, model: str, replicas: int) -> int:
        target = self.cfg.targets[model]
        await self._group(model)  # an unknown group must not create a scaling event
        body = {
            "Count": replicas,
            "Target": {"Group": target.group},
            "Message": f"switchgear: {model} to {replicas}",
            "PolicyOverride": False,
        }
        await self._request("POST", f"/v1/job/{quote(target.job, safe='')}/scale", body)
        return replicas

    async def restart(self, model: str, backend_id: str) -> str:
        path = f"/v1/client/allocation/{quote(backend_id, safe='')}/restart"
        await self._request("POST", path, {"AllTasks": True})
        return backend_id

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
