"""Fixtures of the scaling tests: the Kubernetes and Nomad API doubles on loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from switchgear.settings import parse_settings
from tests.scaling.k8s_double import KubeDouble
from tests.scaling.nomad_double import NomadDouble


@pytest.fixture
async def kube() -> AsyncIterator[tuple[KubeDouble, str]]:
    double = KubeDouble()
    double.add("ml", "deployments", "worker-a", 1)
    double.add("ml", "statefulsets", "worker-b", 2)
    double.pods[("ml", "worker-a-7d9f-x2")] = "worker-a"
    server = TestServer(double.app(), host="127.0.0.1")
    await server.start_server()
    yield double, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def nomad() -> AsyncIterator[tuple[NomadDouble, str]]:
    double = NomadDouble()
    double.jobs[("default", "switchgear-worker")] = {"model-a": 1, "model-b": 0}
    double.allocs.add("5d2c1a4e-0000-4000-8000-000000000001")
    server = TestServer(double.app(), host="127.0.0.1")
    await server.start_server()
    yield double, str(server.make_url("")).rstrip("/")
    await server.close()


def kube_settings(url: str, token_file: Path, **scaling: Any) -> Any:
    k8s = {
        "auth": "token", "host": url, "token_file": str(token_file), "namespace": "ml",
        "timeout_s": 2.0, "targets": {
            "model-a": {"name": "worker-a"},
            "model-b": {"kind": "StatefulSet", "name": "worker-b"},
            "model-x": {"name": "no-such-worker"},
        },
    }  # fmt: skip
    return parse_settings(
        {"scaling": {"kubernetes": k8s, "cooldown_s": 0, "stabilization_s": 0, **scaling}}
    )


def nomad_settings(url: str, **nomad: Any) -> Any:
    cfg = {
        "address": url, "token_env": "TEST_NOMAD_TOKEN", "timeout_s": 2.0,
        "targets": {
            "model-a": {"job": "switchgear-worker", "group": "model-a"},
            "model-z": {"job": "switchgear-worker", "group": "model-z"},
            "model-j": {"job": "no-such-job", "group": "g"},
        }, **nomad,
    }  # fmt: skip
    return parse_settings({"scaling": {"nomad": cfg, "cooldown_s": 0, "stabilization_s": 0}})
