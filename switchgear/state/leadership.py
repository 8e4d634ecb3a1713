"""Detector leadership, whatever holds the lock: the transitions every transport shares.

:class:`LeaderElection` keeps the rules of :mod:`switchgear.state.leader` (Redis) and
:mod:`switchgear.state.consul_leader` (Consul) in one place; each of them supplies only its
transport, :meth:`LeaderElection._hold` and :meth:`LeaderElection._let_go`.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from switchgear.state.metrics import StateMetrics

log = logging.getLogger("switchgear.state")


class LeaderElection(ABC):
    """Whether this process leads the fleet's detector, renewed every :attr:`interval`.

    Each :meth:`claim` asks the transport to renew the lock or take it when free
    (:meth:`_hold`). A process counts itself leader until :attr:`hold_s` after the moment it
    *sent* its last successful claim, so never past the store's own expiry. While the store
    is unreachable (:meth:`_hold` raises one of :attr:`failures`) for longer than
    :attr:`handover_s`, every process leads its own detector (the single-gateway behaviour).

    A change either way sets the ``switchgear_detector_leader`` gauge and logs one line;
    becoming leader calls every :attr:`on_elected` callback (one that raises is logged and
    the others still run). :meth:`release` stops leading at once and lets go of the lock.
    """

    #: What :meth:`_hold` raises when the lock's store does not answer.
    failures: ClassVar[tuple[type[Exception], ...]] = (Exception,)

    def __init__(
        self,
        member: str,
        metrics: StateMetrics,
        *,
        hold_s: float,
        handover_s: float,
        interval: float,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.member, self.metrics = member, metrics
        self.hold_s, self.handover_s, self.interval = hold_s, handover_s, interval
        self._clock = clock or asyncio.get_running_loop().time
        self._until = 0.0
        self._down_since: float | None = None
        self.on_elected: list[Callable[[], None]] = []

    @abstractmethod
    async def _hold(self) -> bool:
        """Renew the lock, or take it when free; whether this process holds it now."""

    @abstractmethod
    async def _let_go(self) -> None:
        """Give the lock up (a clean stop); never raises."""

    def is_leader(self) -> bool:
        now = self._clock()
        if now < self._until:
            return True
        return self._down_since is not None and now - self._down_since > self.handover_s

    async def claim(self) -> bool:
        sent = self._clock()
        was = self.is_leader()
        try:
            won = await self._hold()
        except self.failures:
            if self._down_since is None:
                self._down_since = sent
            won = False
        else:
            self._down_since = None
        if won:
            self._until = sent + self.hold_s
        elif self._down_since is None:
            self._until = 0.0
        return self._report(was)

    def _report(self, was: bool) -> bool:
        now_leads = self.is_leader()
        self.metrics.leader.set(1 if now_leads else 0)
        if now_leads and not was:
            log.info("this process (%s) now leads the fleet's detector", self.member)
            for callback in self.on_elected:
                try:
                    callback()
                except Exception:
                    log.exception("leadership callback %r failed", callback)
        elif was and not now_leads:
            log.info("this process (%s) no longer leads the detector", self.member)
        return now_leads

    async def run(self) -> None:
        while True:
            await self.claim()
            await asyncio.sleep(self.interval)

    async def release(self) -> None:
        self._until = 0.0
        self.metrics.leader.set(0)
        await self._let_go()
