"""What a backend registers as: the Consul service spec of a worker or an external backend.

:func:`worker_spec` and :func:`external_spec` build a :class:`ServiceSpec` (name, id, address,
port, HTTP check, tags and Meta cleaned to Consul's rules); :mod:`.registration` sends it.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from switchgear.settings.consul import ConsulSettings
from switchgear.urls import check_health_path

_META_KEY = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One service instance as registered with the agent (all Consul needs, nothing more)."""

    name: str
    service_id: str
    address: str
    port: int
    check_url: str
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict)
    check_interval: str = "2s"
    check_timeout: str = "1s"
    deregister_after: str = "1m"


def clean_meta(values: Mapping[str, Any]) -> dict[str, str]:
    """Consul's Meta rules: keys ``[A-Za-z0-9_-]`` ≤128 not starting ``consul-``, string values
    ≤512; lists become comma-separated, None is dropped."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None:
            continue
        k = _META_KEY.sub("_", str(key))[:128]
        if not k or k.startswith("consul-"):
            continue
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        out[k] = str(value)[:512]
    return dict(list(out.items())[:64])


def labels(settings: ConsulSettings) -> dict[str, Any]:
    return {**settings.meta, "cloud": settings.cloud, "region": settings.region}


def worker_spec(
    settings: ConsulSettings, info: Mapping[str, Any], address: str, port: int
) -> ServiceSpec:
    """The spec of a worker: ``info`` holds model, quantization, context_length, languages, device."""
    advertised = settings.address or ("" if address in ("0.0.0.0", "::", "") else address)
    probe_host = advertised or "127.0.0.1"  # the agent runs on the worker's own host
    if ":" in probe_host:
        probe_host = f"[{probe_host}]"
    sid = settings.service_id or f"{settings.service}-{socket.gethostname()}-{port}"
    return ServiceSpec(
        name=settings.service,
        service_id=sid,
        address=advertised,
        port=port,
        check_url=f"http://{probe_host}:{port}{settings.check.path}",
        tags=tuple(settings.tags),
        meta=clean_meta({**labels(settings), **info}),
        check_interval=settings.check.interval,
        check_timeout=settings.check.timeout,
        deregister_after=settings.check.deregister_critical_service_after,
    )


def external_spec(
    settings: ConsulSettings,
    url: str,
    model: str,
    *,
    service_id: str | None = None,
    protocol: str = "openai",
    meta: Mapping[str, str] | None = None,
) -> ServiceSpec:
    """The spec of an external backend at ``url`` (its API base, e.g. ``http://10.0.0.5:8000/v1``).

    ``meta['health_path']`` overrides the probed path (default ``settings.check.path`` on the
    URL's origin).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    extra = dict(meta or {})
    # A path only: "@169.254.169.254/..." or "//evil/..." would move the check to another host.
    health = check_health_path(extra.pop("health_path", settings.check.path))
    host = parts.hostname
    origin = f"{parts.scheme}://{f'[{host}]' if ':' in host else host}:{port}"
    if urlsplit(origin + health).hostname != host:
        raise ValueError(f"health_path {health!r} leaves the backend's host")
    sid = service_id or f"{settings.service}-{_META_KEY.sub('-', model)}-{host}-{port}"
    values = {
        **labels(settings),
        **extra,
        "model": model,
        "protocol": protocol,
        "scheme": parts.scheme,
        "url_path": parts.path.rstrip("/"),
        "external": "true",
    }
    return ServiceSpec(
        name=settings.service,
        service_id=sid,
        address=host,
        port=port,
        check_url=origin + health,
        tags=tuple(settings.tags),
        meta=clean_meta(values),
        check_interval=settings.check.interval,
        check_timeout=settings.check.timeout,
        deregister_after=settings.check.deregister_critical_service_after,
    )
