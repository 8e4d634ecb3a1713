"""End to end: real tiny-model workers register themselves in two datacenters.

Each worker is a ``switchgear worker`` process with a ``consul:`` section pointing at its own
datacenter's agent of the Consul double; the gateway (dc1) discovers both. Killing the dc1
worker (SIGKILL: no deregistration) moves traffic to dc2 within 2 s with no failed request;
starting it again brings traffic back to dc1; a hot swap updates the service's Meta; a clean
stop (SIGTERM) deregisters.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from openai import AsyncOpenAI

from switchgear.plugins.manager import make_plugin_manager
from switchgear.proxy import keys
from switchgear.proxy.app import create_app
from switchgear.settings import parse_settings
from tests.conftest import free_port
from tests.consul_double import ConsulCluster
from tests.discovery.conftest import wait_until

pytestmark = pytest.mark.slow
ADMIN_KEY = "e2e-admin-key"

PLUGINS = (
    "switchgear.default_plugins.consul_discovery",
    "switchgear.default_plugins.balancing",
    "switchgear.default_plugins.openai_adapter",
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from switchgear.worker.tiny import TinySpec, make_tiny

    return make_tiny(tmp_path_factory.mktemp("e2e") / "tiny", TinySpec(seed=0))


class WorkerProcess:
    """One ``switchgear worker`` child registering with the agent of its datacenter."""

    def __init__(self, config: Path, port: int, model: Path) -> None:
        self.config, self.port, self.model = config, port, model
        self.log = config.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "switchgear.cli",
                    "--log-level",
                    "WARNING",
                    "worker",
                    "--config",
                    str(self.config),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    async def signal(self, sig: int) -> None:
        # Wait off the loop: the Consul double serving the worker's deregistration runs on it.
        assert self.proc is not None
        self.proc.send_signal(sig)
        await asyncio.to_thread(self.proc.wait, 30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def write_worker_config(path: Path, model: Path, port: int, agent_port: int, sid: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "listen": {"host": "127.0.0.1", "port": port},
                "auth": {"admin_key": ADMIN_KEY},
                "worker": {
                    "model": {"model_name_or_path": str(model), "name": "tiny"},
                    "torch_threads": 1,
                    "watch_config": False,
                    # the swap below is about Consul Meta: keep the gates from refusing on noise
                    "gates": {"logit_tolerance": 1000.0, "latency_tolerance": 100.0},
                },
                "consul": {
                    "host": "127.0.0.1",
                    "port": agent_port,
                    "service": "llm",
                    "service_id": sid,
                    "resync_interval": "1s",
                    "check": {"interval": "1s", "timeout": "1s"},
                },
            }
        )
    )
    return path


@pytest.fixture
async def workers(
    cluster: ConsulCluster, tiny_model: Path, tmp_path: Path
) -> AsyncIterator[dict[str, WorkerProcess]]:
    procs = {}
    for dc, node in (("dc1", "node-1"), ("dc2", "node-2")):
        port = free_port()
        cfg = write_worker_config(
            tmp_path / f"{dc}.yaml", tiny_model, port, cluster.agent(node).port, f"tiny-{dc}"
        )
        procs[dc] = WorkerProcess(cfg, port, tiny_model)
        procs[dc].start()
    yield procs
    for p in procs.values():
        p.stop()
        print(f"--- {p.config.name} log ---\n{p.log.read_text(errors='replace')[-3000:]}")


async def test_workers_register_and_traffic_fails_over_across_datacenters(
    cluster: ConsulCluster, gw_settings, workers: dict[str, WorkerProcess], aiohttp_client
) -> None:
    settings = parse_settings(
        {
            "consul": gw_settings.model_dump(),
            "timeouts": {"connect": 1.0, "ttft": 20.0, "idle": 10.0, "total": 30.0},
            "retries": {"attempts": 3, "backoff_base": 0.005, "backoff_max": 0.02},
            "breaker": {"failures": 3, "cooldown": 0.5},
        }
    )
    app = create_app(
        settings, plugin_manager=make_plugin_manager(load_entrypoints=False, builtins=PLUGINS)
    )
    client = await aiohttp_client(app)
    registry = app[keys.REGISTRY]
    # Both workers load the model, register, and pass their HTTP check.
    await wait_until(registry, lambda: len(registry.backends("tiny")) == 2, within=90.0)
    meta = {b.datacenter: dict(b.meta) for b in registry.backends("tiny")}
    assert meta["dc1"]["model"] == "tiny" and meta["dc2"]["context_length"]

    async with AsyncOpenAI(
        base_url=str(client.make_url("/v1")), api_key="unused", max_retries=0
    ) as sdk:
        await _exercise(sdk, cluster, registry, workers)


async def _exercise(sdk: AsyncOpenAI, cluster: ConsulCluster, registry, workers) -> None:

    async def ask() -> str:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="tiny", messages=[{"role": "user", "content": "hello 你好"}], max_tokens=4
        )
        reply = raw.parse()
        assert reply.choices[0].message.content is not None
        assert reply.usage is not None and reply.usage.completion_tokens > 0
        return raw.headers["x-switchgear-backend"]

    assert "dc=dc1" in await ask()

    await workers["dc1"].signal(signal.SIGKILL)  # dies without deregistering
    loop = asyncio.get_running_loop()
    start = loop.time()
    while "dc=dc2" not in await ask():  # every request must still succeed
        assert loop.time() - start < 2.0, "traffic did not move to dc2 within 2 s"
    for _ in range(3):
        assert "dc=dc2" in await ask()

    # The gateway has seen dc1's check turn critical before it starts again, so the wait
    # below is for the new process's registration, not the stale one.
    await wait_until(
        registry, lambda: [b.datacenter for b in registry.backends("tiny")] == ["dc2"], within=10.0
    )
    workers["dc1"].start()  # same port and service id: it registers again
    await wait_until(registry, lambda: len(registry.backends("tiny")) == 2, within=90.0)
    start = loop.time()
    while "dc=dc1" not in await ask():
        assert loop.time() - start < 3.0, "traffic did not return to dc1"

    # A hot swap (here to an int8 build of the same model) updates the service's Meta.
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"http://127.0.0.1:{workers['dc1'].port}/admin/swap",
            json={"model_name_or_path": str(workers["dc1"].model), "quantization": "int8-dynamic"},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert resp.status == 200, await resp.text()
    await wait_until(
        registry,
        lambda: any(
            b.datacenter == "dc1" and b.meta.get("quantization") == "int8-dynamic"
            for b in registry.backends("tiny")
        ),
        within=10.0,
    )
    assert "dc=dc1" in await ask()

    # A clean stop deregisters: the service disappears from the catalog, not just turns critical.
    await workers["dc2"].signal(signal.SIGTERM)
    await wait_until(
        registry, lambda: [b.datacenter for b in registry.backends("tiny")] == ["dc1"], within=10.0
    )
    assert [svc.id for svc in cluster.datacenters["dc2"].instances("llm")] == []
