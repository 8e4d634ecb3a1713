"""The model slot: what is served now, hot swaps with verification, and rollback.

A swap loads the candidate (beside the current model, or after draining it when
``swap_mode: drain``), runs every ``verify_swap`` gate, and only then points new requests at
the candidate's engine. Requests already on the old engine finish there; the old engine is
then drained, stopped and freed. A failed gate leaves the old model serving. The spec that
was replaced is kept as the rollback target until the next successful swap.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from switchgear.errors import Conflict, NoHealthyBackend
from switchgear.plugins.manager import call_hook_sync
from switchgear.settings.worker import ModelSpec, WorkerSection
from switchgear.worker.engine import Engine
from switchgear.worker.gates import GateResult, Subject, SwapContext, collect, measure_latency
from switchgear.worker.loading import ModelBundle, load_bundle

log = logging.getLogger("switchgear.worker.swap")

State = Literal["loading", "ready", "swapping", "failed"]


@dataclass(slots=True)
class SwapReport:
    ok: bool
    candidate: str
    gates: list[GateResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    @property
    def failed(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed and not g.forced]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "candidate": self.candidate,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "failed": [g.gate for g in self.failed],
            "gates": [asdict(g) for g in self.gates],
        }


def free(bundle: ModelBundle | None) -> None:
    if bundle is None:
        return
    bundle.model = None
    bundle.keep_alive.clear()
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


class ModelSlot:
    """Holds the serving engine; every state change happens on the event loop."""

    def __init__(self, worker: WorkerSection, pm: Any, metrics: Any) -> None:
        self.worker, self.pm, self.metrics = worker, pm, metrics
        self.state: State = "loading"
        self.error: str | None = None
        self.engine: Engine | None = None
        self.previous: ModelSpec | None = None
        self.last_report: SwapReport | None = None
        self._lock = asyncio.Lock()
        self._available = asyncio.Event()
        self._settled = asyncio.Event()

    @property
    def spec(self) -> ModelSpec | None:
        return self.engine.bundle.spec if self.engine else None

    def _engine_for(self, bundle: ModelBundle) -> Engine:
        self.metrics.set_model(bundle)
        return Engine(
            bundle,
            max_batch_size=self.worker.max_batch_size,
            batch_wait_ms=self.worker.batch_wait_ms,
            metrics=self.metrics,
        )

    async def start(self, spec: ModelSpec) -> None:
        try:
            bundle = await asyncio.to_thread(load_bundle, spec, self.pm)
        except Exception as exc:
            log.exception("loading %s failed", spec.model_name_or_path)
            self.state, self.error = "failed", str(exc)
        else:
            self.engine = self._engine_for(bundle)
            self.state = "ready"
            self._available.set()
        self._settled.set()

    async def ready(self) -> None:
        await self._available.wait()

    async def settled(self) -> None:
        """Wait until the first load has succeeded or failed."""
        await self._settled.wait()

    async def current(self) -> Engine:
        """The engine new requests go to (waits while a drain-mode swap has none)."""
        if self.state in ("loading", "failed") and self.engine is None:
            raise NoHealthyBackend(
                f"model is {self.state}" + (f": {self.error}" if self.error else "")
            )
        await self._available.wait()
        assert self.engine is not None
        return self.engine

    async def swap(
        self, spec: ModelSpec, *, force: bool = False, verify: bool = True
    ) -> SwapReport:
        if self._lock.locked():
            raise Conflict("a swap is already in progress")
        async with self._lock:
            if self.engine is None:
                raise NoHealthyBackend("no model is loaded to swap from")
            self.state = "swapping"
            try:
                report = await self._swap(spec, force=force, verify=verify)
            finally:
                self.state = "ready" if self.engine is not None else "failed"
                self._available.set()
            self.last_report = report
            self.metrics.swaps.labels("ok" if report.ok else "refused").inc()
            return report

    async def _swap(self, spec: ModelSpec, *, force: bool, verify: bool) -> SwapReport:
        started = time.perf_counter()
        old = self.engine
        assert old is not None
        g = self.worker.gates
        ctx = SwapContext(gates=g, force=force, pm=self.pm)
        current = Subject(old.bundle.name, old.bundle.tokenizer, old.bundle)
        if verify:
            current.latency_p50 = await old.run(
                lambda b: measure_latency(b, g.probes, g.latency_repeats)
            )
        drain = self.worker.swap_mode == "drain"
        if drain:
            self._available.clear()
            await asyncio.to_thread(old.drain)
            old.close()
            current.bundle = None
            free(old.bundle)
        try:
            candidate = await asyncio.to_thread(load_bundle, spec, self.pm)
        except Exception as exc:
            log.exception("loading candidate %s failed", spec.model_name_or_path)
            if drain:
                await self._restore(old.bundle.spec)
            return SwapReport(
                False,
                spec.served_name(),
                seconds=time.perf_counter() - started,
                error=f"candidate failed to load: {exc}",
            )
        gates: list[GateResult] = []
        if verify:
            cand = Subject(candidate.name, candidate.tokenizer, candidate)
            raw = await asyncio.to_thread(
                call_hook_sync,
                self.pm,
                "verify_swap",
                current=current,
                candidate=cand,
                settings=ctx,
            )
            gates = collect(raw)
            ref = ctx.cache.get("reference")
            if ref is not None and ref is not candidate:
                free(ref)
        report = SwapReport(True, candidate.name, gates, 0.0)
        if report.failed:
            report.ok = False
            free(candidate)
            if drain:
                await self._restore(old.bundle.spec)
            log.warning(
                "swap to %s refused: %s",
                candidate.name,
                "; ".join(f"{x.gate}: {x.detail}" for x in report.failed),
            )
        else:
            self.engine = self._engine_for(candidate)
            self.previous = old.bundle.spec
            self._available.set()
            if not drain:
                await asyncio.to_thread(old.drain)
                old.close()
                free(old.bundle)
            log.info("swapped to %s", candidate.name)
        report.seconds = time.perf_counter() - started
        return report

    async def _restore(self, spec: ModelSpec) -> None:
        bundle = await asyncio.to_thread(load_bundle, spec, self.pm)
        self.engine = self._engine_for(bundle)
        self._available.set()

    async def rollback(self) -> SwapReport:
        if self.previous is None:
            raise Conflict("there is no previous model to roll back to")
        return await self.swap(self.previous, force=True, verify=False)

    async def close(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            await asyncio.to_thread(engine.drain, 30.0)
            engine.close()
            free(engine.bundle)
