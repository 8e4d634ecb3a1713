"""The model slot: what is served now, hot swaps with verification, and rollback.

A swap loads the candidate (beside the current model, or after draining it when
``swap_mode: drain``), runs every ``verify_swap`` gate, and only then points new requests at
the candidate's engine. Requests already on the old engine finish there; the old engine is
then drained, stopped and freed. A failed gate, or a candidate that does not load, leaves the
old model serving. The spec that was replaced goes to the :class:`ModelHistory`; ``rollback``
goes back to any entry of it after re-running the integrity gates.

Gates that need the current model run it on its engine thread, between batches
(``Subject.run``), so serving and measuring never use one model from two threads. In drain
mode what they need from it (architecture, greedy answers, eval answers, latency rounds) is
measured before it is unloaded.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any, Literal

from switchgear.errors import Conflict, NoHealthyBackend
from switchgear.plugins.manager import call_hook_sync
from switchgear.settings.worker import ModelSpec, WorkerSection
from switchgear.worker.backups import ModelHistory
from switchgear.worker.engine import Engine
from switchgear.worker.gates import GateResult, Subject, SwapContext, collect, describe
from switchgear.worker.gates.report import SwapReport
from switchgear.worker.loading import ModelBundle, configure_attention, load_bundle

__all__ = ["ModelSlot", "SwapReport", "free"]

log = logging.getLogger("switchgear.worker.swap")

State = Literal["loading", "ready", "swapping", "failed"]
Force = bool | frozenset[str]


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


def _settle_heap() -> None:
    """Move the objects alive now (the loaded model, its tokenizer, the libraries) out of
    the garbage collector's reach.

    A request with tens of thousands of messages allocates enough objects to set off full
    collections, and each one walked the whole model's object graph while holding the GIL:
    bench/worker_loop.py saw the event loop stall two to four times longer without this.
    Unfreezing and collecting first lets the previous model's cycles go after a swap.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class ModelSlot:
    """Holds the serving engine; every state change happens on the event loop."""

    def __init__(self, worker: WorkerSection, pm: Any, metrics: Any) -> None:
        self.worker, self.pm, self.metrics = worker, pm, metrics
        self.state: State = "loading"
        self.error: str | None = None
        self.engine: Engine | None = None
        self.history = ModelHistory(worker.backup_dir, worker.backup_keep)
        self.last_report: SwapReport | None = None
        self._lock = asyncio.Lock()
        self._available = asyncio.Event()
        self._settled = asyncio.Event()

    @property
    def spec(self) -> ModelSpec | None:
        return self.engine.bundle.spec if self.engine else None

    @property
    def previous(self) -> ModelSpec | None:
        entries = self.history.entries()
        return entries[0].spec if entries else None

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def _engine_for(self, bundle: ModelBundle) -> Engine:
        self.metrics.set_model(bundle)
        configure_attention(bundle.device, self.worker.cudnn_attention)
        _settle_heap()
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
        self, spec: ModelSpec, *, force: Force = False, verify: bool = True, scope: str = "all"
    ) -> SwapReport:
        if self._lock.locked():
            raise Conflict("a swap or rollback is already in progress")
        async with self._lock:
            if self.engine is None:
                raise NoHealthyBackend("no model is loaded to swap from")
            self.state = "swapping"
            try:
                report = await self._swap(spec, force=force, verify=verify, scope=scope)
            finally:
                self.state = "ready" if self.engine is not None else "failed"
                self._available.set()
            self.last_report = report
            self.metrics.swaps.labels("ok" if report.ok else "refused").inc()
            return report

    def _current_subject(self, old: Engine) -> Subject:
        loop = asyncio.get_running_loop()

        def runner(fn: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(old.run(fn), loop).result()

        b = old.bundle
        subject = Subject(b.name, b.tokenizer, b, runner)
        subject.cache["architecture"] = describe(getattr(b.model, "config", None), b.tokenizer)
        return subject

    async def _measure_before_drain(self, current: Subject, ctx: SwapContext) -> None:
        from switchgear.worker.gates import probe_generations, solo_rounds
        from switchgear.worker.gates.evals import current_answers

        g = ctx.gates
        await asyncio.to_thread(probe_generations, current, ctx)
        if ctx.scope == "all":
            await asyncio.to_thread(current_answers, current, ctx)
            current.cache["latency"] = await asyncio.to_thread(
                current.run, lambda b: solo_rounds(b, g.probes, 2 * g.latency_repeats)
            )

    async def _swap(self, spec: ModelSpec, *, force: Force, verify: bool, scope: str) -> SwapReport:
        started = time.perf_counter()
        old = self.engine
        assert old is not None

        def refused(error: str, code: str, gates: list[GateResult] | None = None) -> SwapReport:
            return SwapReport(
                False,
                spec.served_name(),
                gates or [],
                time.perf_counter() - started,
                error=error,
                code=code,
                path=spec.model_name_or_path,
            )

        ctx = SwapContext(gates=self.worker.gates, force=force, pm=self.pm, scope=scope)
        current = self._current_subject(old)
        drain = self.worker.swap_mode == "drain"
        if verify and scope == "all":
            from switchgear.worker.gates.evals import eval_rows

            try:
                await asyncio.to_thread(eval_rows, ctx)
            except Exception as exc:
                return refused(f"the eval set cannot be read: {exc}", "eval_set_unreadable")
        if drain:
            await self._drain_first(old, current, ctx, verify=verify)
        try:
            candidate = await asyncio.to_thread(load_bundle, spec, self.pm)
        except Exception as exc:
            log.exception("loading candidate %s failed", spec.model_name_or_path)
            if drain:
                await self._restore(old.bundle.spec)
            return refused(f"the candidate failed to load: {exc}", "candidate_unloadable")
        gates = await self._verify(current, candidate, ctx) if verify else []
        report = SwapReport(True, candidate.name, gates, 0.0, path=spec.model_name_or_path)
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
            await self._commit(old, candidate, drained=drain)
        report.seconds = time.perf_counter() - started
        return report

    async def _drain_first(
        self, old: Engine, current: Subject, ctx: SwapContext, *, verify: bool
    ) -> None:
        """Drain mode: measure what the gates need of the current model, then let it go."""
        if verify:
            await self._measure_before_drain(current, ctx)
        self._available.clear()
        await asyncio.to_thread(old.drain)
        old.close()
        current.bundle = None
        free(old.bundle)

    async def _verify(
        self, current: Subject, candidate: ModelBundle, ctx: SwapContext
    ) -> list[GateResult]:
        cand = Subject(candidate.name, candidate.tokenizer, candidate)
        raw = await asyncio.to_thread(
            call_hook_sync,
            self.pm,
            "verify_swap",
            current=current,
            candidate=cand,
            settings=ctx,
        )
        gates = collect(raw, ctx)
        ref = ctx.cache.get("reference")
        if ref is not None and ref is not candidate:
            free(ref)
        return gates

    async def _commit(self, old: Engine, candidate: ModelBundle, *, drained: bool) -> None:
        """Serve the candidate; back up the old config and, unless drained already, drain it."""
        self.engine = self._engine_for(candidate)
        await asyncio.to_thread(self.history.push, old.bundle.spec)
        self._available.set()
        if not drained:
            await asyncio.to_thread(old.drain)
            old.close()
            free(old.bundle)
        log.info("swapped to %s", candidate.name)

    async def _restore(self, spec: ModelSpec) -> None:
        bundle = await asyncio.to_thread(load_bundle, spec, self.pm)
        self.engine = self._engine_for(bundle)
        self._available.set()

    async def rollback(self, target: int | str | None = None) -> SwapReport:
        """Go back to a backup (index, id, name or path) after its integrity gates pass."""
        if self._lock.locked():
            raise Conflict("a swap or rollback is already in progress")
        _, backup = self.history.find(target)
        report = await self.swap(backup.spec, force=True, scope="integrity")
        if report.ok:
            await asyncio.to_thread(self.history.remove, backup)
        return report

    async def close(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            await asyncio.to_thread(engine.drain, 30.0)
            engine.close()
            free(engine.bundle)
