"""The operators' dashboard: one self-contained page and the JSON feed it polls.

``GET /dashboard`` serves ``static/dashboard.html`` (inline CSS and JS, SVG charts, nothing
from elsewhere; its CSP allows exactly that page's script and style, by hash). ``GET
/dashboard/feed.json``, polled every 2 s, and ``GET /admin/dashboard.json`` serve the feed:
models with their backends by datacenter (breaker, ejection, quantization, open anomalies)
and fallback state, plugins, rollouts (running and recent), and the detector's anomalies, actions and series
(``?since=<unix ts>``: newer points only; default the last ``WINDOW_S``).

Access: the admin key, as ``Authorization: Bearer <key>`` or as the password of HTTP Basic
auth (a 401 carries ``WWW-Authenticate: Basic``, so a browser prompts for it and sends it
again with the page's fetches). Without a key only while ``auth.dashboard_localhost`` is on
(off by default: behind a reverse proxy on the same host every client is a loopback peer)
and the peer is loopback by :func:`switchgear.auth.is_loopback`; ``auth.admin_localhost_only``
applies too. The auth middleware guards ``/admin/*``, so ``/admin/dashboard.json`` always
needs the Bearer key. The page never holds a key: it fetches its feed from its own origin.

Detector data: ``app[keys.DASHBOARD_SOURCES]`` (tests set their own), else the running
detector (``app[keys.DETECTOR]``), else none (``"detector": false``, the page says "detector
off"). A source that raises is logged and named in ``errors``; the rest is still served. A
model is in fallback while the policy put it there (``Policies.in_fallback``, or a
``fallback`` action without a later ``restore``) or while it has a chain and no healthy backend.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from importlib import resources
from typing import Any, Protocol, runtime_checkable

import orjson
from aiohttp import web

from switchgear.auth import basic_password, bearer_token, is_loopback, match_key
from switchgear.detector.report import action_dict, anomalies_payload, series_payload
from switchgear.detector.service import DetectorService
from switchgear.errors import AuthenticationFailed, PermissionDenied
from switchgear.plugins.manager import describe_plugins
from switchgear.proxy import keys
from switchgear.types import Backend

log = logging.getLogger("switchgear.proxy")

WINDOW_S = 300.0  # series history a fresh page starts with
MAX_WINDOW_S = 900.0  # the oldest ``since`` honoured: bounds one response
PAGE = "static/dashboard.html"


@runtime_checkable
class DashboardSources(Protocol):
    """The detector's view for the dashboard, in the shapes of the admin endpoints.

    Events and actions are JSON-ready mappings (``switchgear.detector.report.event_dict``,
    ``action_dict``); calls are cheap synchronous reads, made on the loop once per request.
    """

    def anomalies(self) -> Mapping[str, Sequence[Any]]:
        """``{"open": [event], "recent": [event]}`` as ``GET /admin/anomalies``."""

    def actions(self) -> Sequence[Any]:
        """The actions taken (any order), as ``GET /admin/actions``' ``actions``."""

    def series(self, since: float) -> Mapping[str, Any]:
        """``{"resolution_s", "series": [{backend_id, model, metric, points}]}``, points after ``since``."""


class DetectorSources:
    """The running detector (``app[keys.DETECTOR]``) as :class:`DashboardSources`."""

    def __init__(self, service: DetectorService) -> None:
        self.service = service

    def anomalies(self) -> Mapping[str, Sequence[Any]]:
        engine = self.service.engine
        return anomalies_payload(engine.open_events(), engine.recent_events())

    def actions(self) -> Sequence[Any]:
        return [action_dict(a) for a in self.service.actions]

    def series(self, since: float) -> Mapping[str, Any]:
        return series_payload(self.service.engine, since)


# --- access -------------------------------------------------------------------------

#: Sent with a 401 so that a browser asks for the admin key itself (as the password).
CHALLENGE = {"WWW-Authenticate": 'Basic realm="switchgear dashboard", charset="UTF-8"'}


def check_access(request: web.Request) -> None:
    """Raise unless the request may see the dashboard (see the module docstring)."""
    auth = request.app[keys.SETTINGS].auth
    admin = request.app[keys.ADMIN_KEY]
    local = is_loopback(request.remote)
    if auth.admin_localhost_only and not local:
        raise PermissionDenied("the dashboard only answers on loopback")
    given = bearer_token(request.headers) or basic_password(request.headers)
    if given is not None:
        if match_key(given, admin) is not None:
            return
        raise AuthenticationFailed("invalid admin key", headers=CHALLENGE)
    if local and auth.dashboard_localhost:
        return
    if not admin:
        raise PermissionDenied("the dashboard needs the admin key and none is configured")
    raise AuthenticationFailed(
        "the dashboard needs the admin key: 'Authorization: Bearer <admin key>', or the "
        "admin key as the password of the browser's prompt",
        headers=CHALLENGE,
    )


# --- the feed -----------------------------------------------------------------------


def _read(errors: list[str], what: str, read: Callable[[], Any], default: Any) -> Any:
    try:
        return read()
    except Exception as exc:
        log.exception("dashboard: reading %s from the detector failed", what)
        errors.append(f"{what}: {type(exc).__name__}")
        return default


def _fallbacks(actions: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Models whose traffic the policy moved to their fallback chain and did not restore."""
    active: dict[str, Mapping[str, Any]] = {}
    for action in sorted(actions, key=lambda a: a.get("ts") or 0.0):
        if action.get("kind") == "fallback":
            active[str(action.get("target"))] = action
        elif action.get("kind") == "restore":
            active.pop(str(action.get("target")), None)
    return active


def _status(state: Mapping[str, Any]) -> str:
    if state["ejected"] is not None:
        return "ejected"
    if state["breaker"] != "closed" and not state["healthy"]:
        return "open"
    return state["breaker"] if state["breaker"] != "closed" else "healthy"


def _backend(request: web.Request, b: Backend, events: list[Mapping[str, Any]]) -> dict[str, Any]:
    state = request.app[keys.BACKEND_STATE].describe(b.id)
    return {
        **{k: getattr(b, k) for k in ("id", "url", "protocol", "weight", "source")},
        "quantization": b.meta.get("quantization"),
        "status": _status(state),
        "open_events": [e["id"] for e in events if e.get("backend_id") == b.id],
        **state,
    }


def _models(
    request: web.Request, open_events: list[Mapping[str, Any]], fallbacks: Mapping[str, Any]
) -> list[dict[str, Any]]:
    registry = request.app[keys.REGISTRY]
    infos = request.app[keys.CATALOG].refresh()
    out = []
    for name in sorted(set(infos) | set(registry.models())):
        info = infos.get(name)
        quant = info.quantization if info else None
        groups = [
            (dc, [_backend(request, b, open_events) for b in bs])
            for dc, bs in registry.by_datacenter(name)
        ]
        serving = any(b["healthy"] for _, rows in groups for b in rows)
        chain = list(info.fallback) if info else []
        reason = fallbacks[name].get("reason") if name in fallbacks else None
        if reason is None and not serving and chain:
            reason = "no healthy backend"
        out.append(
            {
                "name": name,
                "quantization": quant,
                "aliases": list(info.aliases) if info else [],
                "fallback_chain": chain,
                "fallback_active": reason is not None,
                "fallback_reason": reason,
                "serving": serving,
                "open_events": [
                    e["id"]
                    for e in open_events
                    if e.get("model") == name and not e.get("backend_id")
                ],
                "datacenters": [
                    {"name": dc, "local": dc == registry.local_datacenter, "backends": rows}
                    for dc, rows in groups
                ],
            }
        )
    return out


def build_feed(request: web.Request, since: float, plugins: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole dashboard feed (the module docstring lists what it holds)."""
    now = time.time()
    sources = request.app.get(keys.DASHBOARD_SOURCES)
    if sources is None and (service := request.app.get(keys.DETECTOR)) is not None:
        sources = DetectorSources(service)
    errors: list[str] = []
    anomalies: dict[str, Any] = {"open": [], "recent": []}
    actions: list[Any] = []
    series: dict[str, Any] = {"resolution_s": None, "series": []}
    if sources is not None:
        anomalies = _read(errors, "anomalies", sources.anomalies, anomalies)
        actions = _read(errors, "actions", sources.actions, actions)
        series = _read(errors, "series", lambda: sources.series(since), series)
    for decisions in request.app.get(keys.SCALE_DECISIONS, []):  # orchestrator scale plugins
        actions = [*actions, *(action_dict(a) for a in decisions.actions)]
    open_events = list(anomalies.get("open") or [])
    fallbacks = _fallbacks(actions)
    for model in request.app[keys.CATALOG].policies.in_fallback:
        fallbacks.setdefault(model, {"reason": "fallback active"})
    return {
        "generated_at": now,
        "since": since,
        "detector": sources is not None,
        "errors": errors,
        "local_datacenter": request.app[keys.REGISTRY].local_datacenter,
        "degraded": request.app[keys.REGISTRY].degraded,
        "models": _models(request, open_events, fallbacks),
        "plugins": plugins,
        "anomalies": anomalies,
        "actions": actions,
        "series": series,
        "rollouts": _rollouts(request),
    }


def _rollouts(request: web.Request) -> list[dict[str, Any]]:
    """The running rollouts and the last finished ones (``GET /admin/rollouts``)."""
    rollouts = request.app.get(keys.ROLLOUTS)
    return [r.to_dict() for r in rollouts.all()[:10]] if rollouts is not None else []


def _since(request: web.Request, now: float) -> float:
    try:
        since = float(request.query.get("since", ""))
    except ValueError:
        return now - WINDOW_S
    return max(since, now - MAX_WINDOW_S) if math.isfinite(since) else now - WINDOW_S


def feed_handler() -> Callable[[web.Request], Awaitable[web.Response]]:
    """The feed handler. Describing plugins reads every installed distribution's entry
    points (tens of ms), so it is redone only when the set of registered plugins changes."""
    described: dict[tuple[str, ...], list[dict[str, Any]]] = {}

    async def feed(request: web.Request) -> web.Response:
        check_access(request)
        pm = request.app[keys.PLUGINS]
        names = tuple(name for name, _ in pm.list_name_plugin())
        if names not in described:
            described[names] = describe_plugins(pm)
        body = orjson.dumps(build_feed(request, _since(request, time.time()), described[names]))
        return web.Response(
            body=body, content_type="application/json", headers={"Cache-Control": "no-store"}
        )

    return feed


# --- the page -----------------------------------------------------------------------


def _hashes(html: str, tag: str) -> str:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks
    )


def page_handler() -> Callable[[web.Request], Awaitable[web.Response]]:
    """The page handler, with the page and its CSP read once from the package."""
    html = resources.files("switchgear.proxy").joinpath(PAGE).read_text(encoding="utf-8")
    body = html.encode()
    headers = {
        "Content-Security-Policy": (
            f"default-src 'none'; script-src {_hashes(html, 'script')}; "
            f"style-src {_hashes(html, 'style')}; connect-src 'self'; img-src data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        ),
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }

    async def page(request: web.Request) -> web.Response:
        check_access(request)
        return web.Response(body=body, content_type="text/html", charset="utf-8", headers=headers)

    return page


def setup_dashboard(app: web.Application) -> None:
    app.router.add_get("/dashboard", page_handler())
    feed = feed_handler()
    app.router.add_get("/dashboard/feed.json", feed)
    app.router.add_get("/admin/dashboard.json", feed)
