"""Progressive rollout of a new model across the switchgear workers that serve a model.

``POST /admin/rollouts`` starts one (views/rollouts.py); :class:`Rollouts` runs it as a
task that lives in the app's cleanup context (cancelled and awaited on exit). One worker at
a time:

1. **drain**: the gateway ejects it (``rollout: draining``) so no new request goes there,
   then waits until its requests in flight have finished (``drain_timeout_s``);
2. **swap**: ``POST {worker}/admin/swap`` with the worker admin key (env
   ``SWITCHGEAR_WORKER_ADMIN_KEY``, else the gateway's admin key); the gates decide. A
   refusal stops the rollout (``refused``, with the gates' reason);
3. **steps**: readmitted, it receives ``steps[0]`` % of the model's requests, then
   ``steps[1]`` % ..., each for ``step_seconds`` (longer until ``min_samples`` answers,
   at most 3x). Its latency, TTFT and errors are compared with the peers' (the unswapped
   workers; for the last worker, the others) by :func:`~switchgear.proxy.rollout_traffic.verdict`,
   and an open detector anomaly on it, a detector ejection or an open breaker fail it too;
4. a failed step drains it again and ``POST {worker}/admin/rollback``; the rollout stops
   (``rolled_back``, with the reason).

Only one rollout runs per model; a second request gets 409.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from switchgear.errors import InvalidRequest, UpstreamError, for_status
from switchgear.proxy import keys
from switchgear.proxy.rollout_traffic import Rule, TrafficShare, Window, verdict
from switchgear.types import Backend

log = logging.getLogger("switchgear.proxy.rollout")

HISTORY = 20  # finished rollouts kept for GET /admin/rollouts
TICK_S = 0.1  # how often a step re-checks its verdict and a drain its in-flight count
SWAP_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    model: str
    path: str
    steps: tuple[float, ...] = (10.0, 50.0)
    step_seconds: float = 5.0
    drain_timeout_s: float = 30.0
    rule: Rule = field(default_factory=Rule)
    #: passed through to the worker's /admin/swap (quantization, dtype, reference, force)
    swap: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class WorkerProgress:
    backend_id: str
    url: str
    phase: str = "pending"  # pending, draining, swapping, step, done, rolled_back, refused
    share: float | None = None
    reason: str | None = None
    figures: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class Rollout:
    id: str
    plan: RolloutPlan
    workers: list[WorkerProgress]
    state: str = "running"  # running, succeeded, rolled_back, refused, failed
    reason: str | None = None
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        plan = asdict(self.plan)
        plan.pop("swap", None)
        return {
            "id": self.id,
            "object": "rollout",
            "model": self.plan.model,
            "path": self.plan.path,
            "state": self.state,
            "reason": self.reason,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "plan": plan,
            "workers": [asdict(w) for w in self.workers],
        }


class Stop(Exception):  # noqa: N818 - ends a rollout with a state and a reason
    def __init__(self, state: str, reason: str) -> None:
        super().__init__(reason)
        self.state, self.reason = state, reason


def origin(backend: Backend) -> str:
    url = backend.url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class Rollouts:
    """The rollouts of one gateway app: the running ones by model, and the last finished."""

    def __init__(self, app: web.Application, traffic: TrafficShare) -> None:
        self.app, self.traffic = app, traffic
        self.running: dict[str, Rollout] = {}
        self.history: list[Rollout] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.session: aiohttp.ClientSession | None = None

    def all(self) -> list[Rollout]:
        return list(self.running.values()) + self.history[::-1]

    def start(self, plan: RolloutPlan, backends: list[Backend]) -> Rollout:
        ro = Rollout(uuid.uuid4().hex[:12], plan, [WorkerProgress(b.id, b.url) for b in backends])
        self.running[plan.model] = ro
        task = asyncio.create_task(self._run(ro, backends), name=f"rollout:{plan.model}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return ro

    async def preflight(self, plan: RolloutPlan, backends: list[Backend]) -> None:
        """Ask every worker what its ``/admin/swap`` would refuse before loading anything
        (``/admin/swap/preflight``): the first refusal is raised with the worker's status and
        reason, so a bad path is a synchronous 4xx and no worker is drained for it."""
        body = {"model_name_or_path": plan.path, **plan.swap}
        answers = await asyncio.gather(*(self._admin(b, "swap/preflight", body) for b in backends))
        for backend, (status, out) in zip(backends, answers, strict=True):
            if status >= 500 or status == 401:  # 401: the worker admin key is wrong
                raise UpstreamError(f"{backend.id}: preflight failed: {_reason(out, status)}")
            if status != 200:
                err = out.get("error")
                err = err if isinstance(err, dict) else {}
                refusal = for_status(status, f"{backend.id}: {_reason(out, status)}")
                if refusal.type == "server_error":  # 422 and others without a class of their own
                    refusal = InvalidRequest(refusal.message, status=status)
                refusal.param = err.get("param")
                refusal.code = err.get("code") or "rollout_refused"
                raise refusal

    async def _run(self, ro: Rollout, backends: list[Backend]) -> None:
        try:
            for i in range(len(backends)):
                await self._one(ro, i, backends)
            ro.state = "succeeded"
        except Stop as stop:
            ro.state, ro.reason = stop.state, stop.reason
        except asyncio.CancelledError:
            ro.state, ro.reason = "failed", "the gateway stopped during the rollout"
            raise
        except Exception as exc:
            log.exception("rollout %s of %s failed", ro.id, ro.plan.model)
            ro.state, ro.reason = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            self.traffic.shares.pop(ro.plan.model, None)
            ro.ended_at = time.time()
            self.running.pop(ro.plan.model, None)
            self.history = [*self.history, ro][-HISTORY:]
            log.info("rollout %s of %s: %s %s", ro.id, ro.plan.model, ro.state, ro.reason or "")

    async def _one(self, ro: Rollout, i: int, backends: list[Backend]) -> None:
        backend, wp = backends[i], ro.workers[i]
        await self._drain(wp, ro.plan.drain_timeout_s)
        wp.phase = "swapping"
        try:
            status, out = await self._admin(
                backend, "swap", {"model_name_or_path": ro.plan.path, **ro.plan.swap}
            )
        finally:
            self.app[keys.BACKEND_STATE].readmit(backend.id, "rollout")
        if status != 200 or not out.get("ok"):
            wp.phase = "refused"
            wp.reason = _reason(out, status)
            raise Stop("refused", f"{backend.id}: swap refused: {wp.reason}")
        unswapped = {b.id for b in backends[i + 1 :]}
        peers = frozenset(unswapped or {b.id for b in backends if b.id != backend.id})
        for share in ro.plan.steps:
            wp.phase, wp.share = "step", share
            why = await self._step(ro, wp, peers, share / 100.0)
            if why is not None:
                await self._rollback(backend, wp, why)
                raise Stop("rolled_back", f"{backend.id} at {share:g}%: {why}")
        self.traffic.shares.pop(ro.plan.model, None)
        wp.phase, wp.share = "done", None

    async def _drain(self, wp: WorkerProgress, timeout: float) -> None:  # noqa: ASYNC109
        state = self.app[keys.BACKEND_STATE]
        wp.phase = "draining"
        state.eject(wp.backend_id, "rollout: draining")
        deadline = time.monotonic() + timeout
        while state.outstanding(wp.backend_id) > 0:
            if time.monotonic() > deadline:
                state.readmit(wp.backend_id, "rollout")
                raise Stop("failed", f"{wp.backend_id}: still busy after {timeout:g}s of drain")
            await asyncio.sleep(TICK_S)  # outstanding counts have no change event

    async def _step(
        self, ro: Rollout, wp: WorkerProgress, peers: frozenset[str], share: float
    ) -> str | None:
        plan = ro.plan
        window = Window(plan.model, wp.backend_id, peers)
        observers = self.app[keys.OBSERVERS]
        observers.append(window.observe)
        self.traffic.shares[plan.model] = (wp.backend_id, share)
        t0 = time.monotonic()
        try:
            while True:
                why = verdict(window, plan.rule) or self._health(
                    wp.backend_id, time.time() - (time.monotonic() - t0)
                )
                if why is not None:
                    return why
                elapsed = time.monotonic() - t0
                enough = window.cand.n >= plan.rule.min_samples
                if elapsed >= plan.step_seconds and (enough or elapsed >= 3 * plan.step_seconds):
                    return None
                await asyncio.sleep(TICK_S)
        finally:
            observers.remove(window.observe)
            wp.figures.append({"share": share * 100, **window.figures()})

    def _health(self, backend_id: str, since: float) -> str | None:
        """An open detector anomaly on the backend since the step began, or an ejection."""
        service = self.app.get(keys.DETECTOR)
        if service is not None:
            for ev in service.engine.open_events():
                if ev.backend_id == backend_id and ev.started_at >= since:
                    return f"detector anomaly on {ev.metric} (score {ev.score:.2f})"
        described = self.app[keys.BACKEND_STATE].describe(backend_id)
        if described["ejected"]:
            return f"ejected: {described['ejected']}"
        if described["breaker"] == "open":
            return f"breaker open: {described['last_error']}"
        return None

    async def _rollback(self, backend: Backend, wp: WorkerProgress, why: str) -> None:
        self.traffic.shares = {m: s for m, s in self.traffic.shares.items() if s[0] != backend.id}
        await self._drain(wp, 30.0)
        try:
            status, out = await self._admin(backend, "rollback", {})
        finally:
            self.app[keys.BACKEND_STATE].readmit(backend.id, "rollout")
        wp.phase, wp.share = "rolled_back", None
        wp.reason = why if status == 200 else f"{why}; rollback failed: {_reason(out, status)}"

    async def _admin(
        self, backend: Backend, what: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        assert self.session is not None
        key = os.environ.get("SWITCHGEAR_WORKER_ADMIN_KEY") or next(
            (k.decode() for k in self.app[keys.ADMIN_KEY]), ""
        )
        url = f"{origin(backend)}/admin/{what}"
        headers = {"Authorization": f"Bearer {key}"}
        timeout = aiohttp.ClientTimeout(total=SWAP_TIMEOUT_S)
        try:
            async with self.session.post(url, json=body, headers=headers, timeout=timeout) as r:
                data = await r.json(content_type=None)
                return r.status, data if isinstance(data, dict) else {}
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return 502, {"error": {"message": f"worker {backend.id} unreachable: {exc}"}}


def _reason(out: dict[str, Any], status: int) -> str:
    err = out.get("error")
    if isinstance(err, dict) and err.get("message"):
        return f"{err['message']} (HTTP {status})"
    return f"HTTP {status}"


def setup_rollouts(app: web.Application) -> None:
    """``app[keys.ROLLOUTS]``, its traffic plugin, and the context that owns its tasks."""
    traffic = TrafficShare(app[keys.PLUGINS])
    app[keys.PLUGINS].register(traffic, name="switchgear.rollout")
    rollouts = Rollouts(app, traffic)
    app[keys.ROLLOUTS] = rollouts

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        rollouts.session = aiohttp.ClientSession()
        try:
            yield
        finally:
            for task in list(rollouts.tasks):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*rollouts.tasks, return_exceptions=True)
            await rollouts.session.close()

    app.cleanup_ctx.append(ctx)
