"""Agent-side service and check definitions and the parsing of registration bodies
(contract §2.2 key matching, §4.1 defaults and validation)."""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from tests.consul_double.util import DurationError, Fields, bad_request, parse_duration

STATUSES = ("passing", "warning", "critical")


@dataclass(slots=True)
class LocalService:
    id: str
    name: str
    tags: list[str] = field(default_factory=list)
    address: str = ""
    port: int = 0
    meta: dict[str, str] = field(default_factory=dict)
    tagged_addresses: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=lambda: {"Passing": 1, "Warning": 1})
    enable_tag_override: bool = False


@dataclass(slots=True)
class LocalCheck:
    check_id: str
    name: str
    service_id: str = ""
    service_name: str = ""
    status: str = "critical"
    output: str = ""
    notes: str = ""
    type: str = "ttl"
    http: str = ""
    method: str = "GET"
    header: dict[str, list[str]] = field(default_factory=dict)
    interval: float = 0.0
    timeout: float = 10.0
    ttl: float = 0.0
    deregister_after: float = 0.0
    critical_since: float | None = None
    forced: str | None = None
    deadline: float = 0.0  # TTL checks: clock time at which the check expires
    reset: asyncio.Event = field(default_factory=asyncio.Event)


def _duration(f: Fields, *names: str, what: str) -> float:
    raw = f.get(*names)
    if raw is None or raw == "":
        return 0.0
    try:
        return parse_duration(raw)
    except DurationError as exc:
        raise bad_request(f"Request decode failed: {what}: {exc}") from None


def parse_check(
    raw: dict[str, Any], svc: LocalService | None, position: int, total: int, now: float
) -> LocalCheck | None:
    f = Fields(raw)
    if not f:
        return None  # a completely empty check object is dropped silently
    interval = _duration(f, "Interval", what="Interval")
    ttl = _duration(f, "TTL", what="TTL")
    http = f.get("HTTP", default="")
    probe = any(
        f.get(k)
        for k in ("HTTP", "TCP", "UDP", "GRPC", "H2PING", "Args", "ScriptArgs", "OSService")
    )
    if interval and ttl:
        raise bad_request("Invalid check: Interval and TTL cannot both be set")
    if probe and interval <= 0:
        raise bad_request("Invalid check: Interval must be > 0 for a probe check")
    if not probe and not f.get("AliasService", "AliasNode") and ttl <= 0:
        raise bad_request("Invalid check: TTL must be > 0 for TTL checks")
    status = f.get("Status", default="") or "critical"
    if status not in STATUSES:
        raise bad_request(f"Invalid check: Status must be one of {', '.join(STATUSES)}")
    if svc is not None:
        default_id = f"service:{svc.id}" if total == 1 else f"service:{svc.id}:{position}"
        default_name = f"Service '{svc.name}' check"
    else:
        default_id = default_name = f.get("Name", default="")
    deregister = _duration(
        f, "DeregisterCriticalServiceAfter", what="DeregisterCriticalServiceAfter"
    )
    return LocalCheck(
        check_id=f.get("CheckID", "ID", default="") or default_id,
        name=f.get("Name", default="") or default_name,
        service_id=svc.id if svc else f.get("ServiceID", default=""),
        service_name=svc.name if svc else "",
        status=status,
        notes=f.get("Notes", default=""),
        type="http" if http else ("ttl" if ttl else "script"),
        http=http,
        method=f.get("Method", default="GET") or "GET",
        header=f.get("Header", default={}) or {},
        interval=max(interval, 1.0) if interval else 0.0,
        timeout=_duration(f, "Timeout", what="Timeout") or (10.0 if probe else 0.0),
        ttl=ttl,
        deregister_after=max(deregister, 60.0) if deregister else 0.0,
        critical_since=now if status == "critical" else None,
    )


def parse_service(body: Any) -> tuple[LocalService, list[dict[str, Any]]]:
    if not isinstance(body, dict):
        raise bad_request("Request decode failed: expected a JSON object")
    f = Fields(body)
    name = f.get("Name", "Service", default="")
    if not name:
        raise bad_request("Missing service name")
    address = f.get("Address", default="") or ""
    if address in ("0.0.0.0", "::", "[::]"):
        raise bad_request(f"Invalid service address: {address}")
    meta = f.get("Meta", default={}) or {}
    _check_meta(meta)
    port = int(f.get("Port", default=0) or 0)
    tagged = _tagged_addresses(dict(f.get("TaggedAddresses", default={}) or {}), address, port)
    weights = Fields(f.get("Weights", default={}) or {})
    svc = LocalService(
        id=f.get("ID", default="") or name,
        name=name,
        tags=list(f.get("Tags", default=[]) or []),
        address=address,
        port=port,
        meta=dict(meta),
        tagged_addresses=tagged,
        weights={
            "Passing": int(weights.get("Passing", default=1)),
            "Warning": int(weights.get("Warning", default=1)),
        },
        enable_tag_override=bool(f.get("EnableTagOverride", default=False)),
    )
    raw_checks: list[dict[str, Any]] = []
    if f.get("Check"):
        raw_checks.append(f.get("Check"))
    raw_checks.extend(f.get("Checks", default=[]) or [])
    return svc, [c for c in raw_checks if c]


def _check_meta(meta: dict[str, Any]) -> None:
    if len(meta) > 64:
        raise bad_request(
            "Invalid service meta: Node metadata cannot contain more than 64 key/value pairs"
        )
    for k, v in meta.items():
        if not isinstance(v, str):
            raise bad_request("Request decode failed: Meta values must be strings")
        if (
            not k
            or len(k) > 128
            or k.startswith("consul-")
            or not all(c.isalnum() or c in "_-" for c in k)
        ):
            raise bad_request(f"Invalid service meta: Key {k!r} is not valid")
        if len(v) > 512:
            raise bad_request(
                f"Invalid service meta: Value is too long (limit: 512 characters) for key {k!r}"
            )


def _tagged_addresses(tagged: dict[str, Any], address: str, port: int) -> dict[str, Any]:
    """``tagged`` plus the lan/wan addresses Consul derives from an IP ``address``."""
    try:
        ip = ipaddress.ip_address(address) if address else None
    except ValueError:
        ip = None
    if ip is not None:
        fam = "ipv4" if ip.version == 4 else "ipv6"
        tagged.setdefault(f"lan_{fam}", {"Address": address, "Port": port})
        tagged.setdefault(f"wan_{fam}", {"Address": address, "Port": port})
    return tagged
