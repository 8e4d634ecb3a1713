"""Real tiny-model workers for the detector's end-to-end tests, shared by the module.

``workers`` starts three ``switchgear worker`` processes once per module: ``tiny-a`` and
``tiny-b`` (model ``tiny``) and ``fb`` (model ``tiny-fb``), each with the admin key that
``POST /admin/faults`` needs. Every test gets its own gateway (``create_app`` on
``aiohttp_client``) with a fresh detector, and ``_reset_faults`` clears every worker's
faults after each test, so tests do not depend on each other's order.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import yaml
from openai import AsyncOpenAI

from switchgear.settings import Settings, parse_settings
from tests.helpers import free_port, poll_until, poll_until_sync

ADMIN = "admin-secret"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
T = TypeVar("T")


def write_worker_config(path: Path, model_dir: Path, name: str, port: int | None) -> Path:
    config: dict[str, Any] = {
        "auth": {"admin_key": ADMIN},
        "worker": {
            "model": {"model_name_or_path": str(model_dir), "name": name},
            "torch_threads": 1,
            "batch_wait_ms": 1,
            "watch_config": False,
        },
    }
    if port is not None:
        config["listen"] = {"host": "127.0.0.1", "port": port}
    path.write_text(yaml.safe_dump(config))
    return path


class Worker:
    """One ``switchgear worker`` child process on a loopback port."""

    def __init__(self, config: Path, model: str, port: int) -> None:
        self.config, self.model, self.port = config, model, port
        self.base = f"http://127.0.0.1:{port}"
        self.url = self.base + "/v1"
        self.log = config.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "switchgear.cli", "--log-level", "WARNING", "worker",
                 "--config", str(self.config)],
                env=env, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker {self.config.name} exited: {self.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(self.base + "/health", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def warm(self) -> None:
        """A few direct requests, so the first batches' one-off costs precede the tests."""
        body = json.dumps(
            {"model": self.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        ).encode()
        for _ in range(3):
            req = urllib.request.Request(
                self.url + "/chat/completions", body, {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=30) as resp:
                resp.read()

    async def faults(self, **faults: float) -> None:
        body = dict(faults)  # what is left out goes back to 0
        async with aiohttp.ClientSession() as s:
            async with s.post(self.base + "/admin/faults", json=body, headers=ADMIN_HEADERS) as r:
                assert r.status == 200, await r.text()

    async def pauses(self) -> int:
        async with aiohttp.ClientSession() as s:
            async with s.get(self.base + "/admin/faults", headers=ADMIN_HEADERS) as r:
                return int((await r.json())["pauses"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import warnings

    from switchgear.worker.tiny import TinySpec, make_tiny

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_tiny(tmp_path_factory.mktemp("detector-e2e") / "tiny", TinySpec(seed=0))


@pytest.fixture(scope="module")
def workers(model_dir: Path) -> Iterator[dict[str, Worker]]:
    root = model_dir.parent
    procs = {}
    for ident, model in (("tiny-a", "tiny"), ("tiny-b", "tiny"), ("fb", "tiny-fb")):
        port = free_port()
        cfg = write_worker_config(root / f"{ident}.yaml", model_dir, model, port)
        procs[ident] = Worker(cfg, model, port)
        procs[ident].start()
    try:
        poll_until_sync(lambda: all(w.ready() for w in procs.values()), 180, "workers ready")
        for w in procs.values():
            w.warm()
        yield procs
    finally:
        for w in procs.values():
            w.stop()
            print(f"--- {w.log.name} ---\n{w.log.read_text(errors='replace')[-2000:]}")


@pytest.fixture(scope="module")
def scaler_config(model_dir: Path) -> Path:
    """Worker config for the local scaler (port and name come from its command line)."""
    return write_worker_config(model_dir.parent / "scaled.yaml", model_dir, "tiny-fb", None)


@pytest.fixture(autouse=True)
async def _reset_faults(workers: dict[str, Worker]) -> Any:
    yield
    await asyncio.gather(*(w.faults() for w in workers.values()))


def gateway_settings(workers: dict[str, Worker], **detector: Any) -> Settings:
    """Small resolution and thresholds so events open within seconds."""
    # the per-series events act here (the shipped config's outlier and leak rules are
    # tested with that config as is in test_shipped_config.py)
    policy = {
        "probe_interval_s": 0.5,
        "probe_timeout_s": 0.5,
        "eject_metrics": ["latency_p95", "ttft", "error_rate"],
        "memory_metrics": ["memory_rss", "gpu_allocated"],
        "outliers": {"enabled": False},
        "leak": {"enabled": False},
        **detector.pop("policy", {}),
    }
    return parse_settings(
        {
            "backends": [{"id": i, "model": w.model, "url": w.url} for i, w in workers.items()],
            "models": {"tiny": {"fallback": ["tiny-fb"]}, "tiny-fb": {}},
            "auth": {"admin_key": ADMIN},
            "retries": {"attempts": 3, "backoff_base": 0.005, "backoff_max": 0.02},
            "detector": {
                "enabled": True,
                "resolution_s": 0.25,
                "scrape_interval_s": 0.25,
                "scrape_timeout_s": 1.0,
                "history": 1200,
                "detectors": {"*": "zscore"},
                # memory must grow by 30% of its level, latency become 5x its level
                "params": {"zscore": {"warmup": 12, "min_change": 0.3},
                           "zscore@latency_p95": {"min_change": 4.0}},
                "events": {"open_score": 0.97, "close_score": 0.3, "open_after": 4,
                           "close_after": 8},
                "policy": policy,
                # restarts go through each worker's POST /admin/restart
                "worker_admin_key": ADMIN,
                **detector,
            },
        }
    )  # fmt: skip


async def until(
    check: Callable[[], Awaitable[T | None]], within: float, what: str | Callable[[], str]
) -> T:
    """Poll ``check`` (between requests of the load) until it returns a value; fail after
    ``within`` seconds saying ``what`` was awaited."""
    value: T = await poll_until(check, within, what, interval=0.1)
    return value


class Load:
    """``concurrency`` loops of chat completions through the official client until stopped."""

    def __init__(self, base_url: str, model: str, concurrency: int, pause_s: float = 0.0):
        self.client = AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
        self.model, self.pause_s = model, pause_s
        self.ok = 0
        self.failures: list[str] = []
        self.models: Counter[str] = Counter()
        self.fallbacks: Counter[str] = Counter()
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(concurrency)]

    def add(self, concurrency: int, pause_s: float = 0.0) -> None:
        self.pause_s = pause_s
        self._tasks += [asyncio.create_task(self._loop()) for _ in range(concurrency)]

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                raw = await self.client.chat.completions.with_raw_response.create(
                    model=self.model,
                    messages=[{"role": "user", "content": "hello"}],
                    max_tokens=2,
                )
                self.models[raw.parse().model] += 1
                if fb := raw.headers.get("x-switchgear-fallback"):
                    self.fallbacks[fb] += 1
                self.ok += 1
            except Exception as exc:  # every failure is reported by the test
                self.failures.append(repr(exc))
            if self.pause_s:
                try:  # pacing of the load, not synchronisation
                    await asyncio.wait_for(self._stop.wait(), self.pause_s)
                except TimeoutError:
                    pass

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self.client.close()
