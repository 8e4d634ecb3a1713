"""Every file under deploy/ loads: Kubernetes objects through the kubernetes client's models
(a round trip that loses a key means a misspelt or misplaced field), the KEDA ScaledObject
and the Nomad jobs through schema checks, the compose file through YAML and key checks, and
every switchgear config they carry through the settings schema."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes_asyncio.client import ApiClient

from switchgear.settings import parse_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_FILES = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
ENV = {"CONSUL_HOST": "consul", "WORKER_HOST": "w", "POD_NAME": "p", "POD_IP": "10.0.0.1",
       "NOMAD_ALLOC_ID": "a", "NOMAD_ADDR": "http://nomad:4646"}  # fmt: skip


class _Response:
    def __init__(self, obj: dict[str, Any]) -> None:
        self.data = json.dumps(obj)


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def documents() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, d) for p in K8S_FILES for d in yaml.safe_load_all(p.read_text()) if d]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)


async def test_kubernetes_objects_round_trip():
    api = ApiClient()
    seen = set()
    for name, doc in documents():
        if doc["apiVersion"].startswith("keda.sh/"):
            continue
        obj = api.deserialize(_Response(doc), f"V1{doc['kind']}")
        back = _prune(api.sanitize_for_serialization(obj))
        assert back == _prune(doc), f"{name}: {doc['kind']} {doc['metadata']['name']} lost keys"
        seen.add(doc["kind"])
    await api.close()
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount", "Role", "RoleBinding"} <= seen


def test_worker_readiness_and_rbac_scope():
    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in documents()}
    worker = docs[("Deployment", "switchgear-worker-tiny")]
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    role = docs[("Role", "switchgear-scale")]
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert resources == {"deployments/scale", "statefulsets/scale"}
    assert role["rules"][0]["resourceNames"] == [worker["metadata"]["name"]]


def test_keda_scaled_object_points_at_the_gateway(env: None):
    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in documents()}
    so = docs[("ScaledObject", "switchgear-worker-tiny")]
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    assert so["spec"]["scaleTargetRef"]["name"] in {n for k, n in docs if k == "Deployment"}
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] in {"external", "external-push"}
    host, port = trigger["metadata"]["scalerAddress"].rsplit(":", 1)
    assert host.split(".")[0] == "switchgear-gateway"
    service = docs[("Service", "switchgear-gateway")]
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}
    gateway = parse_settings(
        yaml.safe_load(docs[("ConfigMap", "switchgear-gateway")]["data"]["gateway.yaml"])
    )
    assert gateway.scaling.keda.enabled and gateway.scaling.keda.port == int(port)
    assert trigger["metadata"]["model"] in gateway.models
    assert gateway.scaling.kubernetes is not None
    target = gateway.scaling.kubernetes.targets[trigger["metadata"]["model"]]
    assert target.name == so["spec"]["scaleTargetRef"]["name"]
    worker = parse_settings(
        yaml.safe_load(docs[("ConfigMap", "switchgear-worker-tiny")]["data"]["worker.yaml"])
    )
    assert worker.consul is not None and worker.consul.service_id == "p"  # the pod's name


NOMAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["Job"],
    "properties": {"Job": {
        "type": "object",
        "required": ["ID", "Name", "Type", "Datacenters", "TaskGroups"],
        "properties": {
            "Type": {"enum": ["service", "batch", "system", "sysbatch"]},
            "Datacenters": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "TaskGroups": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["Name", "Count", "Tasks"],
                "properties": {
                    "Count": {"type": "integer", "minimum": 0},
                    "Tasks": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "required": ["Name", "Driver", "Config"],
                    }},
                },
            }},
        },
    }},
}  # fmt: skip


def _templates(job: dict[str, Any]) -> dict[str, str]:
    return {t["DestPath"]: t["EmbeddedTmpl"] for g in job["TaskGroups"] for task in g["Tasks"]
            for t in task.get("Templates", [])}  # fmt: skip


def _render(tmpl: str) -> str:
    return re.sub(r"\{\{[^}]*\}\}", "127.0.0.1", tmpl)  # Nomad's template calls


@pytest.mark.parametrize("path", sorted((DEPLOY / "nomad").glob("*.json")), ids=lambda p: p.name)
def test_nomad_jobs(path: Path, env: None):
    job = json.loads(path.read_text())
    jsonschema.validate(job, NOMAD_SCHEMA)
    for dest, tmpl in _templates(job["Job"]).items():
        if dest.endswith(".yaml"):
            parse_settings(yaml.safe_load(_render(tmpl)))


def test_nomad_gateway_scales_the_worker_group(env: None):
    worker = json.loads((DEPLOY / "nomad" / "worker.json").read_text())["Job"]
    gateway = json.loads((DEPLOY / "nomad" / "gateway.json").read_text())["Job"]
    cfg = parse_settings(yaml.safe_load(_render(_templates(gateway)["local/gateway.yaml"])))
    assert (
        cfg.scaling.nomad is not None
        and "switchgear.default_plugins.nomad_scaler" in cfg.plugins.modules
    )
    target = cfg.scaling.nomad.targets["tiny"]
    assert target.job == worker["ID"] and target.group in {g["Name"] for g in worker["TaskGroups"]}
    wcfg = parse_settings(yaml.safe_load(_render(_templates(worker)["local/worker.yaml"])))
    assert wcfg.consul is not None and wcfg.consul.service_id == "a"  # the allocation id


def test_compose_two_datacenters(env: None):
    compose = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"consul-dc1", "consul-dc2", "worker-dc1", "worker-dc2", "gateway"}
    dc1, dc2 = services["consul-dc1"]["command"], services["consul-dc2"]["command"]
    assert "-server" in dc1 and "-datacenter=dc1" in dc1 and "-bootstrap-expect=1" in dc1
    assert "-server" in dc2 and "-datacenter=dc2" in dc2 and "-retry-join-wan=consul-dc1" in dc2
    for dc in ("dc1", "dc2"):
        worker = services[f"worker-{dc}"]
        assert worker["environment"]["CONSUL_HOST"] == f"consul-{dc}"
        assert worker["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / "Dockerfile").is_file()
    for service in ("worker-dc1", "gateway"):
        for volume in services[service]["volumes"]:
            src = volume.split(":")[0]
            cfg = parse_settings(yaml.safe_load((DEPLOY / "compose" / src).read_text()))
            assert cfg.consul is not None
