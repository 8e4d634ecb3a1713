"""The ``scale`` hook for any orchestrator: leader check, policy, bounded calls, and a
logged, recorded result for every outcome; an orchestrator failure never raises into the
gateway (the result's ``error`` says what went wrong).

A ``ScaleRequest`` for a model with no target in this orchestrator answers None, so another
scale plugin (the local scaler) may take it. ``restart:<backend id>`` restarts that replica
(the backend id is the pod name or the allocation id: the deploy files register workers so).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from switchgear.orchestrators import OrchestratorError
from switchgear.orchestrators.leader import LeaderCheck, always_leader, leader_check
from switchgear.orchestrators.policy import DecisionLog, ScalePolicy
from switchgear.plugins.hookspecs import hookimpl
from switchgear.types import ScaleRequest, ScaleResult

log = logging.getLogger("switchgear.orchestrators")

RESTART = "restart:"


class Orchestrator(Protocol):
    name: str

    def knows(self, model: str) -> bool: ...

    async def check(self) -> None:
        """Reach the API and read every target; raises OrchestratorError naming the problem."""

    async def replicas(self, model: str) -> int: ...

    async def set_replicas(self, model: str, replicas: int) -> int:
        """Set the replica count; the count the orchestrator now wants."""

    async def restart(self, model: str, backend_id: str) -> str:
        """Restart one replica; what now replaces it (a workload or allocation name)."""

    async def close(self) -> None: ...


class ScalePlugin:
    """Registered by the plugin modules' ``make_plugin``; one per gateway app."""

    def __init__(
        self,
        orchestrator: Orchestrator,
        policy: ScalePolicy,
        *,
        timeout_s: float = 30.0,
        leader: LeaderCheck = always_leader,
    ) -> None:
        self.orchestrator = orchestrator
        self.policy = policy
        self.timeout_s = timeout_s
        self.leader = leader
        self.decisions = DecisionLog()
        self.serving: Any = None  # model -> replicas answering traffic, bound at startup
        self.healthy: str | None = None  # None until check() ran; then "" or the problem
        self._checking: asyncio.Task[None] | None = None

    async def check(self) -> str:
        """The start-up check: "" when the API answers for every target, else the problem."""
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.orchestrator.check()
        except OrchestratorError as exc:
            self.healthy = str(exc)
        except TimeoutError:
            self.healthy = f"timeout: {self.orchestrator.name} API did not answer"
        else:
            self.healthy = ""
        return self.healthy

    @hookimpl
    async def startup(self, app: Any) -> None:
        from switchgear.orchestrators.wiring import bind

        self.leader = leader_check(app) if self.leader is always_leader else self.leader
        bind(app, self)
        # in the background: a slow API must not hold the gateway's start
        self._checking = asyncio.create_task(self._start_check(), name="scaler-check")

    async def _start_check(self) -> None:
        problem = await self.check()
        if problem:
            # The gateway keeps serving; each scale call reports the problem until it clears.
            log.error("%s scaler: %s", self.orchestrator.name, problem)

    @hookimpl
    async def shutdown(self, app: Any) -> None:
        if self._checking is not None:
            self._checking.cancel()
            await asyncio.gather(self._checking, return_exceptions=True)
        await self.orchestrator.close()

    @hookimpl(tryfirst=True)
    async def scale(self, request: ScaleRequest) -> ScaleResult | None:
        orch, model = self.orchestrator, request.model
        if not orch.knows(model):
            return None
        if not self.leader():
            self.decisions.record("scale_skip", model, "not the detector leader")
            return ScaleResult(model, request.current, error="not the detector leader")
        try:
            async with asyncio.timeout(self.timeout_s):
                if request.reason.startswith(RESTART):
                    return await self._restart(request)
                return await self._scale(request)
        except TimeoutError:
            err = f"timeout: {orch.name} API did not answer within {self.timeout_s:g}s"
        except OrchestratorError as exc:
            err = str(exc)
        except Exception as exc:  # an API client bug must not reach the detector loop
            log.exception("%s scaler failed for %s", orch.name, model)
            err = f"api: {type(exc).__name__}: {exc}"
        log.error("%s scaler: %s for %s: %s", orch.name, request.reason, model, err)
        self.decisions.record("scale_error", model, err, asked=request.replicas)
        return ScaleResult(model, request.current, error=err)

    def _serving(self, request: ScaleRequest) -> int:
        # unbound (no gateway app): nothing is known to serve traffic
        return 0 if self.serving is None else int(self.serving(request.model))

    async def _scale(self, request: ScaleRequest) -> ScaleResult:
        model = request.model
        current = await self.orchestrator.replicas(model)
        decision = self.policy.decide(model, request.replicas, current, self._serving(request))
        reached = current
        if decision.replicas != current:
            reached = await self.orchestrator.set_replicas(model, decision.replicas)
        self.decisions.record(
            decision.kind,
            model,
            f"{request.reason}: {decision.reason}",
            replicas=decision.replicas,
            reached=reached,
            orchestrator=self.orchestrator.name,
        )
        log.info("%s scaler: %s %d -> %d (%s)", self.orchestrator.name, model, current,
                 reached, decision.reason)  # fmt: skip
        return ScaleResult(model, reached)

    async def _restart(self, request: ScaleRequest) -> ScaleResult:
        backend_id = request.reason.removeprefix(RESTART)
        replacement = await self.orchestrator.restart(request.model, backend_id)
        self.decisions.record(
            "restart", backend_id, f"restarted by {self.orchestrator.name}", by=replacement
        )
        return ScaleResult(request.model, request.current, (replacement,), (backend_id,))
