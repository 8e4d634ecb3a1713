"""Kubernetes: a model's replica count is the ``scale`` subresource (``autoscaling/v1
Scale``) of its Deployment or StatefulSet, read and patched with kubernetes_asyncio.

The patch carries the ``resourceVersion`` that was read, so a change made in between (an
HPA, ``kubectl scale``) answers 409 Conflict; the scale is then re-read and patched again,
at most ``conflict_retries`` times. A restart deletes the pod (its controller replaces it);
the backend id is the pod's name. Auth: in-cluster service account, a kubeconfig, or a
bearer token file with an explicit API host.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from switchgear.orchestrators import OrchestratorError
from switchgear.settings.scaling import KubernetesScaling, KubernetesTarget

try:
    from kubernetes_asyncio import client, config
    from kubernetes_asyncio.client.exceptions import ApiException
    from kubernetes_asyncio.config import ConfigException
except ModuleNotFoundError as exc:  # the optional extra is not installed
    raise ModuleNotFoundError(
        "the Kubernetes scaler needs the 'kubernetes' extra: pip install 'switchgear[kubernetes]'",
        name=exc.name,
    ) from exc


def _api_error(exc: ApiException, what: str) -> OrchestratorError:
    message = exc.reason or ""
    try:
        message = json.loads(exc.body or "{}").get("message") or message
    except (ValueError, AttributeError):
        pass
    kind = {401: "denied", 403: "denied", 404: "not_found", 409: "conflict"}.get(
        exc.status or 0, "api"
    )
    return OrchestratorError(kind, f"Kubernetes {what}: {exc.status} {message}".strip())


def _read_token(path: str) -> str:
    # a few bytes from a mounted secret, read once per client: not worth an executor
    return Path(path).read_text().strip()


class KubernetesOrchestrator:
    name = "kubernetes"

    def __init__(self, cfg: KubernetesScaling) -> None:
        self.cfg = cfg
        self._api: client.ApiClient | None = None
        self._lock = asyncio.Lock()

    def knows(self, model: str) -> bool:
        return model in self.cfg.targets

    async def _client(self) -> client.ApiClient:
        async with self._lock:
            if self._api is None:
                self._api = client.ApiClient(await self._configuration())
            return self._api

    async def _configuration(self) -> client.Configuration:
        cfg, conf = self.cfg, client.Configuration()
        try:
            if cfg.auth == "in-cluster":
                config.load_incluster_config(client_configuration=conf)  # type: ignore[no-untyped-call]
            elif cfg.auth == "kubeconfig":
                await config.load_kube_config(
                    config_file=cfg.kubeconfig, context=cfg.context, client_configuration=conf
                )
            else:
                assert cfg.host and cfg.token_file  # the settings validator ensures both
                conf.host = cfg.host
                conf.api_key = {"BearerToken": _read_token(cfg.token_file)}
                conf.api_key_prefix = {"BearerToken": "Bearer"}
        except (ConfigException, OSError) as exc:
            raise OrchestratorError(
                "config", f"Kubernetes credentials ({cfg.auth}): {exc}"
            ) from None
        if cfg.host and cfg.auth != "token":
            conf.host = cfg.host
        conf.verify_ssl = cfg.verify_ssl
        return conf

    def _target(self, model: str) -> tuple[KubernetesTarget, str]:
        target = self.cfg.targets[model]
        return target, target.namespace or self.cfg.namespace

    async def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, _request_timeout=self.cfg.timeout_s, **kwargs)
        except ApiException as exc:
            raise _api_error(exc, what) from None
        except TimeoutError:  # before OSError: aiohttp's timeouts are both
            raise OrchestratorError(
                "timeout", f"Kubernetes {what}: no answer within {self.cfg.timeout_s:g}s"
            ) from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise OrchestratorError(
                "unreachable", f"Kubernetes API at {self._api_host()}: {exc or type(exc).__name__}"
            ) from None

    def _api_host(self) -> str:
        return str(self._api.configuration.host) if self._api is not None else "?"

    def _scale_fns(self, api: client.ApiClient, kind: str) -> tuple[Any, Any]:
        apps = client.AppsV1Api(api)
        if kind == "StatefulSet":
            return apps.read_namespaced_stateful_set_scale, apps.patch_namespaced_stateful_set_scale
        return apps.read_namespaced_deployment_scale, apps.patch_namespaced_deployment_scale

    async def _read(self, model: str) -> Any:
        target, ns = self._target(model)
        read, _ = self._scale_fns(await self._client(), target.kind)
        return await self._call(f"read {target.kind} {ns}/{target.name} scale", read,
                                target.name, ns)  # fmt: skip

    async def check(self) -> None:
        await self._client()
        for model in self.cfg.targets:
            await self._read(model)

    async def replicas(self, model: str) -> int:
        scale = await self._read(model)
        return int(scale.spec.replicas or 0)

    async def set_replicas(self, model: str, replicas: int) -> int:
        target, ns = self._target(model)
        _, patch = self._scale_fns(await self._client(), target.kind)
        what = f"patch {target.kind} {ns}/{target.name} scale"
        for attempt in range(self.cfg.conflict_retries + 1):
            scale = await self._read(model)
            body = {
                "metadata": {"resourceVersion": scale.metadata.resource_version},
                "spec": {"replicas": replicas},
            }
            try:
                done = await self._call(what, patch, target.name, ns, body,
                                        _content_type="application/merge-patch+json")  # fmt: skip
            except OrchestratorError as exc:
                if exc.kind == "conflict" and attempt < self.cfg.conflict_retries:
                    continue
                raise
            return int(done.spec.replicas or 0)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def restart(self, model: str, backend_id: str) -> str:
        target, ns = self._target(model)
        core = client.CoreV1Api(await self._client())
        await self._call(f"delete pod {ns}/{backend_id}", core.delete_namespaced_pod,
                         backend_id, ns)  # fmt: skip
        return f"{target.kind.lower()}/{target.name}"

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None
