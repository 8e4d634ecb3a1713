"""A test double of the Kubernetes API's parts the scaler uses, from the API reference:

- ``GET|PATCH /apis/apps/v1/namespaces/{ns}/{deployments|statefulsets}/{name}/scale`` with
  ``autoscaling/v1 Scale`` bodies (``metadata.resourceVersion``, ``spec.replicas``,
  ``status.replicas``, ``status.selector``); a patch whose ``metadata.resourceVersion``
  differs from the stored one answers 409 ``Conflict``; a patch needs a patch content type
  (415 otherwise);
- ``DELETE /api/v1/namespaces/{ns}/pods/{name}`` answers the deleted Pod;
- errors are ``v1 Status`` objects (``kind: Status``, ``reason``, ``code``); no bearer token
  is 401 ``Unauthorized``; a token without the right is 403 ``Forbidden``.

Knobs: ``conflicts`` (force that many 409s, as if a controller wrote in between), ``delay_s``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

PATCH_TYPES = {
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
}
RESOURCES = {"deployments": "Deployment", "statefulsets": "StatefulSet"}


def status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}  # fmt: skip
    return web.json_response(body, status=code)


@dataclass
class KubeDouble:
    token: str = "k8s-token"
    readonly_token: str = "k8s-readonly"
    workloads: dict[tuple[str, str, str], int] = field(default_factory=dict)
    versions: dict[tuple[str, str, str], int] = field(default_factory=dict)
    pods: dict[tuple[str, str], str] = field(default_factory=dict)
    conflicts: int = 0
    delay_s: float = 0.0
    patches: list[dict[str, object]] = field(default_factory=list)

    def add(self, ns: str, resource: str, name: str, replicas: int) -> None:
        self.workloads[(ns, resource, name)] = replicas
        self.versions[(ns, resource, name)] = 1

    def _auth(self, request: web.Request, write: bool) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return status(401, "Unauthorized", "Unauthorized")
        token = header.removeprefix("Bearer ")
        if token == self.token or (token == self.readonly_token and not write):
            return None
        if token == self.readonly_token:
            return status(403, "Forbidden", 'cannot patch resource "deployments/scale"')
        return status(401, "Unauthorized", "Unauthorized")

    def _scale(self, key: tuple[str, str, str]) -> dict[str, object]:
        ns, resource, name = key
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": name,
                "namespace": ns,
                "resourceVersion": str(self.versions[key]),
            },  # fmt: skip
            "spec": {"replicas": self.workloads[key]},
            "status": {"replicas": self.workloads[key], "selector": f"app={name}"},
        }

    async def scale(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay_s)  # a slow API server, not synchronisation
        write = request.method == "PATCH"
        if (denied := self._auth(request, write)) is not None:
            return denied
        m = request.match_info
        key = (m["ns"], m["resource"], m["name"])
        if m["resource"] not in RESOURCES or key not in self.workloads:
            group = f"{m['resource']}.apps"
            return status(404, "NotFound", f'{group} "{m["name"]}" not found')
        if write:
            if request.content_type not in PATCH_TYPES:
                return status(
                    415, "UnsupportedMediaType", "the body of the request was in an unknown format"
                )
            body = await request.json()
            self.patches.append(body)
            rv = (body.get("metadata") or {}).get("resourceVersion")
            if self.conflicts > 0 or (rv is not None and rv != str(self.versions[key])):
                self.conflicts = max(0, self.conflicts - 1)
                self.versions[key] += 1
                return status(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {m["resource"]}.apps "{m["name"]}": the object has been modified; please apply your changes to the latest version and try again',
                )
            self.workloads[key] = int(body["spec"]["replicas"])
            self.versions[key] += 1
        return web.json_response(self._scale(key))

    async def delete_pod(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request, True)) is not None:
            return denied
        ns, name = request.match_info["ns"], request.match_info["name"]
        if (ns, name) not in self.pods:
            return status(404, "NotFound", f'pods "{name}" not found')
        del self.pods[(ns, name)]
        return web.json_response({"kind": "Pod", "apiVersion": "v1",
                                  "metadata": {"name": name, "namespace": ns}})  # fmt: skip

    def app(self) -> web.Application:
        app = web.Application()
        path = "/apis/apps/v1/namespaces/{ns}/{resource}/{name}/scale"
        app.router.add_get(path, self.scale)
        app.router.add_patch(path, self.scale)
        app.router.add_delete("/api/v1/namespaces/{ns}/pods/{name}", self.delete_pod)
        return app
