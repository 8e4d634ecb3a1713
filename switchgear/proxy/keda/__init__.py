"""KEDA external scaler: ``switchgear serve`` answers KEDA's ``externalscaler.proto`` over
gRPC (``scaling.keda``), one model per ScaledObject.

The ScaledObject's trigger metadata names the model (``model: chatglm3-6b``; without it the
ScaledObject's name is the model). Answers:

- ``IsActive``: requests wait for the model (scale from zero), it has ready replicas, or its
  desired replicas are above zero;
- ``StreamIsActive``: the same, sent when the stream opens, at once when a request starts
  waiting for a model with no replica, and every ``stream_interval_s``;
- ``GetMetricSpec``: one metric ``switchgear-desired-replicas-<model>`` with target 1, so
  KEDA's HPA (AverageValue) sets the replica count to the metric's value;
- ``GetMetrics``: that metric's value, the model's desired replicas.

``StreamMetricSpec`` is not implemented (KEDA then polls ``GetMetricSpec``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc

from switchgear.proxy.capacity import Capacity
from switchgear.proxy.coldstart import ColdStart
from switchgear.proxy.keda import externalscaler_pb2 as pb
from switchgear.proxy.keda import externalscaler_pb2_grpc as pb_grpc
from switchgear.settings.scaling import KedaSettings

log = logging.getLogger("switchgear.keda")

_NAME = re.compile(r"[^a-z0-9-]+")


def metric_name(model: str) -> str:
    return "switchgear-desired-replicas-" + _NAME.sub("-", model.lower()).strip("-")


class ExternalScaler(pb_grpc.ExternalScalerServicer):
    def __init__(self, settings: KedaSettings, cold: ColdStart, capacity: Capacity) -> None:
        self.s, self.cold, self.capacity = settings, cold, capacity

    async def _model(self, ref: Any, context: grpc.aio.ServicerContext) -> str:
        model = ref.scalerMetadata.get("model") or ref.name
        if not model:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "metadata 'model' is required")
        return str(model)

    def active(self, model: str) -> bool:
        return self.cold.active(model) or self.capacity.desired(model)[0] > 0

    async def IsActive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return pb.IsActiveResponse(result=self.active(await self._model(request, context)))

    async def StreamIsActive(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        model = await self._model(request, context)
        woken = asyncio.Event()

        def changed(name: str, _active: bool) -> None:
            if name == model:
                woken.set()

        self.cold.listeners.append(changed)
        try:
            while True:
                yield pb.IsActiveResponse(result=self.active(model))
                try:
                    await asyncio.wait_for(woken.wait(), self.s.stream_interval_s)
                except TimeoutError:
                    pass
                woken.clear()
        finally:
            self.cold.listeners.remove(changed)

    async def GetMetricSpec(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        model = await self._model(request, context)
        spec = pb.MetricSpec(metricName=metric_name(model), targetSize=1, targetSizeFloat=1.0)
        return pb.GetMetricSpecResponse(metricSpecs=[spec])

    async def GetMetrics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        model = await self._model(request.scaledObjectRef, context)
        want = self.capacity.desired(model)[0]
        if want == 0 and self.cold.queued(model):
            want = 1
        value = pb.MetricValue(
            metricName=request.metricName or metric_name(model),
            metricValue=want,
            metricValueFloat=float(want),
        )
        return pb.GetMetricsResponse(metricValues=[value])


class KedaServer:
    """The gRPC server's lifetime (started and stopped by the gateway's cleanup context)."""

    def __init__(self, settings: KedaSettings, cold: ColdStart, capacity: Capacity) -> None:
        self.settings = settings
        self.scaler = ExternalScaler(settings, cold, capacity)
        self.server: grpc.aio.Server | None = None
        self.port = settings.port

    async def start(self) -> None:
        server = grpc.aio.server()
        pb_grpc.add_ExternalScalerServicer_to_server(self.scaler, server)  # type: ignore[no-untyped-call]
        self.port = server.add_insecure_port(f"{self.settings.host}:{self.settings.port}")
        if self.port == 0:
            raise OSError(f"cannot listen on {self.settings.host}:{self.settings.port} (KEDA)")
        await server.start()
        self.server = server
        log.info("KEDA external scaler on %s:%d", self.settings.host, self.port)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=1.0)
            self.server = None
