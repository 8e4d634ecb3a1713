"""Built-in local scaler: answers ``scale`` by starting and stopping ``switchgear worker``
processes on this machine, and publishes them as the registry source ``"scaler"``.

Configure it with ``detector.scaler.worker_configs`` (model or ``"*"`` → worker YAML): the
manager then registers a :class:`LocalScaler` for the app (``make_plugin``). Each process is
``switchgear worker -c FILE --host HOST --port PORT --name MODEL`` on a free port; ``scale``
returns once the new workers' ``/health`` says ready (bounded by ``ready_timeout_s``; a
worker that exits or stays unready is killed and not counted). Started workers become
backends ``scaler-MODEL-N`` of the gateway's registry (bound at the ``startup`` hook);
scaling down stops the newest (SIGTERM, SIGKILL after ``stop_timeout_s``); the ``shutdown``
hook stops them all. Replicas it did not start are never touched, so it cannot go below them.

A ``ScaleRequest`` whose reason is ``restart:<backend id>`` replaces that worker when this
scaler started it (else it answers with nothing started). ``scale`` is a plain ``def`` that
returns the coroutine doing the work: ``scale`` is a firstresult hook, picked synchronously.
The registry comes from the ``host`` argument of ``startup``
(:class:`~switchgear.plugins.host.Host`), not from the gateway's app keys. Orchestrators
(Nomad, Kubernetes) implement ``scale`` in their own plugin; this one is ``trylast`` so
theirs wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from switchgear.plugins.hookspecs import hookimpl
from switchgear.plugins.host import BackendRegistry, Host
from switchgear.types import Backend, ScaleRequest, ScaleResult

log = logging.getLogger("switchgear.scaler")

SOURCE = "scaler"
RESTART = "restart:"


@dataclass(slots=True)
class _Proc:
    id: str
    model: str
    port: int
    process: asyncio.subprocess.Process


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def worker_command(config: str, host: str) -> list[str]:
    return [
        sys.executable, "-m", "switchgear.cli", "--log-level", "WARNING", "worker",
        "-c", config, "--host", host, "--port", "{port}", "--name", "{model}",
    ]  # fmt: skip


class LocalScaler:
    """``commands`` maps a model (or ``"*"``) to an argv template with ``{port}``, ``{model}``
    and ``{index}`` placeholders."""

    def __init__(
        self,
        commands: Mapping[str, Sequence[str]],
        *,
        host: str = "127.0.0.1",
        ready_timeout_s: float = 120.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.commands = {m: list(c) for m, c in commands.items()}
        self.host = host
        self.ready_timeout_s, self.stop_timeout_s = ready_timeout_s, stop_timeout_s
        self.procs: dict[str, list[_Proc]] = {}
        self.registry: BackendRegistry | None = None
        self._started = 0

    @classmethod
    def from_settings(cls, cfg: Any) -> LocalScaler:
        return cls(
            {m: worker_command(path, cfg.host) for m, path in cfg.worker_configs.items()},
            host=cfg.host,
            ready_timeout_s=cfg.ready_timeout_s,
            stop_timeout_s=cfg.stop_timeout_s,
        )

    # --- processes -----------------------------------------------------------------------

    def backends(self) -> list[Backend]:
        return [
            Backend(id=p.id, model=p.model, url=f"http://{self.host}:{p.port}/v1", source=SOURCE)
            for procs in self.procs.values()
            for p in procs
        ]

    def _publish(self) -> None:
        if self.registry is not None:
            self.registry.replace(SOURCE, self.backends())

    async def start(self, model: str) -> str | None:
        """Start one worker of ``model`` and wait until it is ready; its id, or None."""
        template = self.commands.get(model, self.commands.get("*"))
        if template is None:
            return None
        port, index = free_port(self.host), self._started
        self._started += 1
        args = [a.format(port=port, model=model, index=index) for a in template]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        process = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, env=env
        )
        proc = _Proc(f"scaler-{model}-{index}", model, port, process)
        if not await self._ready(proc):
            log.error("worker %s did not become ready; stopped", proc.id)
            await self._terminate(proc)
            return None
        self.procs.setdefault(model, []).append(proc)
        self._publish()
        return proc.id

    async def _ready(self, proc: _Proc) -> bool:
        url = f"http://{self.host}:{proc.port}/health"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout_s
        timeout = aiohttp.ClientTimeout(total=2.0)
        async with aiohttp.ClientSession() as session:
            while loop.time() < deadline and proc.process.returncode is None:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url, timeout=timeout) as resp:
                        if resp.status == 200:
                            return True
                await asyncio.sleep(0.2)  # polling interval of the readiness check
        return False

    async def _terminate(self, proc: _Proc) -> None:
        if proc.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.process.terminate()
            try:
                await asyncio.wait_for(proc.process.wait(), self.stop_timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.process.kill()
                await proc.process.wait()

    async def stop(self, model: str, ident: str | None = None) -> str | None:
        """Stop ``ident`` (or the newest worker of ``model``); its id, or None."""
        procs = self.procs.get(model) or []
        chosen = next((p for p in procs if p.id == ident), None) if ident else None
        if chosen is None and ident is None and procs:
            chosen = procs[-1]
        if chosen is None:
            return None
        procs.remove(chosen)
        self._publish()
        await self._terminate(chosen)
        return chosen.id

    async def close(self) -> None:
        for model in list(self.procs):
            while self.procs.get(model):
                await self.stop(model)

    # --- hooks ---------------------------------------------------------------------------

    @hookimpl
    def startup(self, host: Host) -> None:
        if host.registry is not None:
            self.registry = host.registry

    @hookimpl
    async def shutdown(self, app: Any) -> None:
        await self.close()

    @hookimpl(trylast=True)
    def scale(self, request: ScaleRequest) -> Coroutine[Any, Any, ScaleResult]:
        return self.apply(request)

    async def apply(self, request: ScaleRequest) -> ScaleResult:
        """Start or stop workers until ``request.replicas`` (or replace one, on a restart)."""
        if request.reason.startswith(RESTART):
            return await self._restart(request)
        started: list[str] = []
        stopped: list[str] = []
        current = request.current
        while current < request.replicas:
            ident = await self.start(request.model)
            if ident is None:
                break
            started.append(ident)
            current += 1
        while current > request.replicas and self.procs.get(request.model):
            ident = await self.stop(request.model)
            if ident:
                stopped.append(ident)
            current -= 1
        return ScaleResult(request.model, current, tuple(started), tuple(stopped))

    async def _restart(self, request: ScaleRequest) -> ScaleResult:
        ident = request.reason.removeprefix(RESTART)
        stopped = await self.stop(request.model, ident)
        if stopped is None:
            return ScaleResult(request.model, request.current)
        new = await self.start(request.model)
        count = request.current - (new is None)
        return ScaleResult(request.model, count, (new,) if new else (), (stopped,))


def make_plugin(settings: Any) -> object:
    """A :class:`LocalScaler` when ``detector.scaler.worker_configs`` is set, else this module."""
    cfg = getattr(getattr(settings, "detector", None), "scaler", None)
    if cfg is not None and cfg.worker_configs:
        return LocalScaler.from_settings(cfg)
    return sys.modules[__name__]
