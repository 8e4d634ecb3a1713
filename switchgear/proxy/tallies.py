"""Counters and histograms kept as plain numbers on the hot path, exposed at scrape time.

prometheus_client's metric objects validate, lock and walk their buckets on every update;
a request of the gateway makes about ten updates. In one process nothing needs that: a
request adds to a number in a dict, and :class:`Tallies` (a prometheus_client collector)
turns the numbers into metric families only when ``/metrics`` is read. The families are
those the equivalent prometheus_client ``Counter`` / ``Histogram`` / ``Gauge`` would give,
sample for sample and in the same order (``_total``, ``_created``, the cumulative
``_bucket`` series with their ``le``, ``_count``, ``_sum``), so the exposition is the same.

With ``--workers N`` the series must reach files the other processes read
(prometheus_client's multiprocess mode); :mod:`switchgear.proxy.metrics` keeps
prometheus_client's own objects there.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence

import prometheus_client.metrics as pm
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

INF = float("inf")


def _use_created() -> bool:
    """Whether prometheus_client exposes ``_created`` series (its own switch, read at
    each scrape as its metrics do)."""
    return bool(getattr(pm, "_use_created", True))


class CounterSeries:
    """One label set of a counter."""

    __slots__ = ("value", "created")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount


class HistogramSeries:
    """One label set of a histogram: a count per bucket (not cumulative) and the sum."""

    __slots__ = ("bounds", "counts", "sum", "created")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0.0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        self.sum += amount
        if amount == amount:  # NaN falls in no bucket, as in prometheus_client
            self.counts[bisect_left(self.bounds, amount)] += 1


class Family:
    """A labelled counter or histogram: its series by label values, created on first use."""

    __slots__ = ("name", "doc", "kind", "labelnames", "bounds", "les", "series")

    def __init__(
        self,
        kind: str,
        name: str,
        doc: str,
        labelnames: Sequence[str],
        buckets: Sequence[float] = (),
    ) -> None:
        self.kind, self.name, self.doc = kind, name, doc
        self.labelnames = tuple(labelnames)
        bounds = [float(b) for b in buckets]
        if kind == "histogram" and (not bounds or bounds[-1] != INF):
            bounds.append(INF)
        self.bounds = tuple(bounds)
        self.les = tuple(floatToGoString(b) for b in bounds)  # type: ignore[no-untyped-call]
        self.series: dict[tuple[str, ...], CounterSeries | HistogramSeries] = {}

    def counter(self, labels: tuple[str, ...]) -> CounterSeries:
        s = self.series.get(labels)
        if s is None:
            s = self.series[labels] = CounterSeries()
        return s  # type: ignore[return-value]

    def histogram(self, labels: tuple[str, ...]) -> HistogramSeries:
        s = self.series.get(labels)
        if s is None:
            s = self.series[labels] = HistogramSeries(self.bounds)
        return s  # type: ignore[return-value]

    def metric(self, created: bool) -> Metric:
        m = Metric(self.name, self.doc, self.kind)
        names = self.labelnames
        for values, s in list(self.series.items()):
            labels = dict(zip(names, values, strict=True))
            if isinstance(s, CounterSeries):
                m.add_sample(self.name + "_total", labels, s.value)
            else:
                acc = 0.0
                for le, n in zip(self.les, s.counts, strict=True):
                    acc += n
                    m.add_sample(self.name + "_bucket", {**labels, "le": le}, acc)
                m.add_sample(self.name + "_count", labels, acc)
                if self.bounds[0] >= 0:
                    m.add_sample(self.name + "_sum", labels, s.sum)
            if created:
                m.add_sample(self.name + "_created", labels, s.created)
        return m


class Level:
    """An unlabelled gauge moved up and down (requests in flight)."""

    __slots__ = ("name", "doc", "value")

    def __init__(self, name: str, doc: str) -> None:
        self.name, self.doc, self.value = name, doc, 0

    def inc(self) -> None:
        self.value += 1

    def dec(self) -> None:
        self.value -= 1

    def metric(self) -> Metric:
        m = Metric(self.name, self.doc, "gauge")
        m.add_sample(self.name, {}, float(self.value))
        return m


class Tallies:
    """The collector of some families and gauges, in the order they were given."""

    def __init__(self, parts: Iterable[Family | Level]) -> None:
        self.parts = tuple(parts)

    def collect(self) -> Iterable[Metric]:
        created = _use_created()
        for p in self.parts:
            yield p.metric(created) if isinstance(p, Family) else p.metric()

    def describe(self) -> Iterable[Metric]:
        return [Metric(p.name, p.doc, getattr(p, "kind", "gauge")) for p in self.parts]
