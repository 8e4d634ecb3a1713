"""Built-in local scaler: answers ``scale`` by starting and stopping ``switchgear worker``
processes on this machine.

Use it by registering an instance with a worker command template::

    pm.register(LocalScaler(["switchgear", "worker", "-c", "worker.yaml",
                             "--port", "{port}", "--name", "{model}-{index}"]), "local-scaler")

or, without code, by setting ``SWITCHGEAR_SCALER_CONFIG`` to a worker config file: the
module-level hook then runs ``switchgear worker -c FILE --port PORT --name MODEL-N``.
Ports are taken from ``base_port`` upwards. Scaling down stops the newest process it
started (SIGTERM, then SIGKILL after ``stop_timeout_s``); replicas it did not start are
never touched, so it cannot go below them. Orchestrators (Nomad, Kubernetes) implement
``scale`` in their own plugin; this one is ``trylast`` so theirs wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from switchgear.plugins.hookspecs import hookimpl
from switchgear.types import ScaleRequest, ScaleResult


@dataclass(slots=True)
class _Proc:
    id: str
    port: int
    process: asyncio.subprocess.Process


class LocalScaler:
    def __init__(
        self, command: Sequence[str], *, base_port: int = 18100, stop_timeout_s: float = 10.0
    ) -> None:
        self.command = list(command)
        self.base_port = base_port
        self.stop_timeout_s = stop_timeout_s
        self.procs: dict[str, list[_Proc]] = {}

    def _port(self) -> int:
        used = {p.port for procs in self.procs.values() for p in procs}
        port = self.base_port
        while port in used:
            port += 1
        return port

    async def start(self, model: str) -> str:
        procs = self.procs.setdefault(model, [])
        port, index = self._port(), len(procs)
        ident = f"{model}-{index}"
        args = [a.format(port=port, model=model, index=index) for a in self.command]
        process = await asyncio.create_subprocess_exec(*args)
        procs.append(_Proc(ident, port, process))
        return ident

    async def stop(self, model: str) -> str | None:
        procs = self.procs.get(model)
        if not procs:
            return None
        proc = procs.pop()
        if proc.process.returncode is None:
            proc.process.terminate()
            try:
                await asyncio.wait_for(proc.process.wait(), self.stop_timeout_s)
            except TimeoutError:
                proc.process.kill()
                await proc.process.wait()
        return proc.id

    async def close(self) -> None:
        for model in list(self.procs):
            while self.procs.get(model):
                await self.stop(model)

    @hookimpl(trylast=True)
    async def scale(self, request: ScaleRequest) -> ScaleResult:
        started: list[str] = []
        stopped: list[str] = []
        current = request.current
        while current < request.replicas:
            started.append(await self.start(request.model))
            current += 1
        while current > request.replicas and self.procs.get(request.model):
            ident = await self.stop(request.model)
            if ident:
                stopped.append(ident)
            current -= 1
        return ScaleResult(request.model, current, tuple(started), tuple(stopped))


_from_env: dict[str, LocalScaler] = {}


@hookimpl(trylast=True)
async def scale(request: ScaleRequest) -> ScaleResult | None:
    """The env-configured scaler (``SWITCHGEAR_SCALER_CONFIG``), or None when not configured."""
    config = os.environ.get("SWITCHGEAR_SCALER_CONFIG")
    if not config:
        return None
    scaler = _from_env.get(config)
    if scaler is None:
        command = [
            sys.executable,
            "-m",
            "switchgear.cli",
            "worker",
            "-c",
            config,
            "--port",
            "{port}",
            "--name",
            "{model}-{index}",
        ]
        scaler = _from_env[config] = LocalScaler(command)
    with contextlib.suppress(ProcessLookupError):
        return await scaler.scale(request)
    return None
