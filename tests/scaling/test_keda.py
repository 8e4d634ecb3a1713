"""The KEDA external scaler, driven by a real gRPC client built from the same proto making
KEDA's calls, and scale from zero through the gateway: the held request, StreamIsActive
pushing active, and the 503 with Retry-After past the wait."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp.test_utils import TestServer

from switchgear.plugins.hookspecs import hookimpl
from switchgear.plugins.manager import make_plugin_manager
from switchgear.proxy import keys
from switchgear.proxy.app import create_app
from switchgear.proxy.keda import externalscaler_pb2 as pb
from switchgear.proxy.keda import externalscaler_pb2_grpc as pb_grpc
from switchgear.settings import parse_settings
from switchgear.types import Backend, Observation, ScaleRequest, ScaleResult
from tests.fakes.upstream import FakeUpstream

CHAT = {"model": "cold", "messages": [{"role": "user", "content": "hi"}]}


class Starter:
    """A scale plugin that 'starts' a replica by publishing the fake upstream."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.app: Any = None
        self.requests: list[ScaleRequest] = []

    @hookimpl
    def startup(self, app: Any) -> None:
        self.app = app

    @hookimpl(tryfirst=True)
    def scale(self, request: ScaleRequest) -> ScaleResult:
        self.requests.append(request)
        if self.url is not None:
            backend = Backend(id="cold-1", model=request.model, url=self.url, source="test")
            self.app[keys.REGISTRY].replace("test", [backend])
        return ScaleResult(request.model, request.replicas if self.url else 0)


async def gateway(starter: Starter, wait_s: float) -> TestServer:
    settings = parse_settings({
        "models": {"cold": {}},
        "scaling": {"cold_start_wait_s": wait_s, "cold_start_retry_after_s": 7,
                    "keda": {"enabled": True, "host": "127.0.0.1", "port": 0,
                             "stream_interval_s": 30}},
    })  # fmt: skip
    pm = make_plugin_manager(settings=settings, load_entrypoints=False)
    pm.register(starter, name="starter")
    server = TestServer(create_app(settings, plugin_manager=pm), host="127.0.0.1")
    await server.start_server()
    return server


def ref(model: str = "cold") -> Any:
    return pb.ScaledObjectRef(name="worker", namespace="ml", scalerMetadata={"model": model})


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(model="cold", name="a") as up:
        yield up


async def test_scale_from_zero_pushes_active_and_holds(
    upstream: FakeUpstream, http: aiohttp.ClientSession
):
    starter = Starter(upstream.url)
    server = await gateway(starter, wait_s=10)
    port = server.app[keys.KEDA_SERVER].port
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            assert (await stub.IsActive(ref())).result is False
            stream = stub.StreamIsActive(ref())
            assert (await stream.read()).result is False
            async with http.post(server.make_url("/v1/chat/completions"), json=CHAT) as resp:
                body = await resp.json()
                status = resp.status
            # the push came while the request was held; the stream interval is 30 s
            assert (await asyncio.wait_for(stream.read(), 5)).result is True
            stream.cancel()
            assert (await stub.IsActive(ref())).result is True
        assert status == 200, body
        assert "hello from a" in body["choices"][0]["message"]["content"]
        assert starter.requests[0].replicas == 1 and starter.requests[0].current == 0
    finally:
        await server.close()


async def test_past_the_wait_is_503_with_retry_after(http: aiohttp.ClientSession):
    server = await gateway(Starter(None), wait_s=0.3)
    try:
        async with http.post(server.make_url("/v1/chat/completions"), json=CHAT) as resp:
            body = await resp.json()
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "7"
        assert body["error"]["code"] == "model_starting"
    finally:
        await server.close()


async def test_metric_spec_and_metrics_follow_desired_replicas():
    server = await gateway(Starter(None), wait_s=0)
    capacity = server.app[keys.CAPACITY]
    port = server.app[keys.KEDA_SERVER].port
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            spec = await stub.GetMetricSpec(ref())
            (metric,) = spec.metricSpecs
            assert metric.metricName == "switchgear-desired-replicas-cold"
            assert metric.targetSize == 1
            req = pb.GetMetricsRequest(scaledObjectRef=ref(), metricName=metric.metricName)
            before = (await stub.GetMetrics(req)).metricValues[0]
            assert before.metricValue == 0
            now = capacity.clock()
            for i in range(300):  # 5 rps over the 60 s window: answered fast by one replica
                capacity.observe(Observation("b1", "cold", "dc1", 200, 0.1, ts=now - 60 + i * 0.2))
                capacity.observe(Observation("b2", "slow", "dc1", 200, 3.0, ts=now - 60 + i * 0.2))
            fast = (await stub.GetMetrics(req)).metricValues[0]
            assert fast.metricName == metric.metricName
            assert fast.metricValue == 1  # one replica handled 5 rps within 2 s
            slow_req = pb.GetMetricsRequest(scaledObjectRef=ref("slow"), metricName="x")
            slow = (await stub.GetMetrics(slow_req)).metricValues[0]
            # past the target latency: capacity stays at the 1 rps default, 5 rps needs 4-6
            assert 4 <= slow.metricValue <= 6 and slow.metricValueFloat == slow.metricValue
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.IsActive(pb.ScaledObjectRef(name="", namespace="ml"))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await server.close()
