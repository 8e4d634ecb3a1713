"""End-to-end checks against a real Consul agent at ``CONSUL_HTTP_ADDR`` (e.g. ``127.0.0.1:8500``).

Skipped when the variable is not set. The same code runs against the double in the other
tests; these prove the double did not hide a difference. The agent must run on this host
(its HTTP check probes the fake backends on 127.0.0.1). ``CONSUL_HTTP_TOKEN`` is cleared by
the shared conftest, so set ``SWITCHGEAR_TEST_CONSUL_TOKEN`` when the agent has ACLs on.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit

import pytest

from switchgear.discovery.base import Registry
from switchgear.discovery.consul import ConsulDiscovery
from switchgear.discovery.registration import ServiceRegistration, external_spec
from switchgear.settings.consul import ConsulCheckSettings, ConsulSettings
from tests.discovery.conftest import wait_until

ADDR = os.environ.get("CONSUL_HTTP_ADDR")

pytestmark = [
    pytest.mark.real_consul,
    pytest.mark.skipif(
        not ADDR, reason="CONSUL_HTTP_ADDR is not set: no real Consul agent to test against"
    ),
]


def _settings(service: str) -> ConsulSettings:
    parts = urlsplit(ADDR if "//" in (ADDR or "") else f"//{ADDR}")
    return ConsulSettings(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 8500,
        scheme=parts.scheme or "http",
        token=os.environ.get("SWITCHGEAR_TEST_CONSUL_TOKEN"),
        service=service,
        wait="5s",
        kv_prefix=None,
        backoff_initial=0.2,
        backoff_max=2.0,
        check=ConsulCheckSettings(interval="1s", timeout="1s"),
    )


async def test_registered_backend_is_discovered_and_removed(fake_backend):
    import asyncio
    import contextlib

    fb = await fake_backend()
    settings = _settings(f"switchgear-test-{uuid.uuid4().hex[:8]}")
    spec = external_spec(settings, fb.url, "real-consul-model", service_id=f"{settings.service}-1")
    reg = ServiceRegistration(settings, spec)
    registry = Registry()
    task = asyncio.create_task(ConsulDiscovery(settings).run(registry))
    try:
        await reg.start()
        await wait_until(
            registry, lambda: len(registry.backends("real-consul-model")) == 1, within=15.0
        )
        fb.healthy = False
        await wait_until(registry, lambda: not registry.backends("real-consul-model"), within=15.0)
    finally:
        await reg.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
