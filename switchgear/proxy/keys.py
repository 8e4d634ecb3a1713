"""Every ``web.AppKey`` and ``web.RequestKey`` of the gateway, in one place.

Other parts (the detector, plugins) reach gateway state only through these keys, e.g.
``app[BACKEND_STATE].eject(backend_id, reason)`` or ``app[OBSERVERS].append(callback)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import pluggy
from aiohttp import web

from switchgear.detector.service import DetectorService
from switchgear.discovery.base import Registry
from switchgear.proxy.bodybudget import BodyBudget
from switchgear.proxy.breaker import BackendState
from switchgear.proxy.catalog import ModelCatalog
from switchgear.proxy.metrics import Metrics
from switchgear.proxy.ratelimit import RateLimiter
from switchgear.proxy.upstream import Upstream
from switchgear.settings import Settings
from switchgear.state import FleetState
from switchgear.telemetry import Tracing
from switchgear.types import Observation, ParsedRequest, Usage

if TYPE_CHECKING:  # views.dashboard imports this module
    from switchgear.orchestrators.policy import DecisionLog
    from switchgear.proxy.capacity import Capacity
    from switchgear.proxy.coldstart import ColdStart
    from switchgear.proxy.keda import KedaServer
    from switchgear.proxy.views.dashboard import DashboardSources
if TYPE_CHECKING:  # drain and health_checks import this module
    from switchgear.proxy.drain import Drain
    from switchgear.proxy.health_checks import HealthChecker
    from switchgear.proxy.rollout import Rollouts

SETTINGS = web.AppKey("settings", Settings)
PLUGINS = web.AppKey("plugins", pluggy.PluginManager)
REGISTRY = web.AppKey("registry", Registry)
METRICS = web.AppKey("metrics", Metrics)
BACKEND_STATE = web.AppKey("backend_state", BackendState)
UPSTREAM = web.AppKey("upstream", Upstream)
#: Called with every finished upstream attempt; exceptions are logged and ignored.
OBSERVERS: web.AppKey[list[Callable[[Observation], None]]] = web.AppKey("observers", list)
CATALOG = web.AppKey("catalog", ModelCatalog)
#: Background shadow requests in flight (cancelled and awaited on cleanup).
SHADOW_TASKS: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("shadow_tasks", set)

#: The running detector (engine, policy, actions); absent when ``detector.enabled`` is false.
DETECTOR = web.AppKey("detector", DetectorService)

REQUEST_ID = web.RequestKey("request_id", str)
#: Index of the API key that authenticated the request (never the key itself).
API_KEY_ID = web.RequestKey("api_key_id", str)
#: (model, backend id, datacenter) that answered, for the metrics middleware.
ANSWERED_BY: web.RequestKey[tuple[str, str, str]] = web.RequestKey("answered_by", tuple)
#: Model aliases (``models.<name>.aliases`` and Consul KV): alias → model; kept by CATALOG.
ALIASES: web.AppKey[dict[str, str]] = web.AppKey("aliases", dict)
#: The API keys (bytes) and the admin key, resolved once at startup.
API_KEYS: web.AppKey[tuple[bytes, ...]] = web.AppKey("api_keys", tuple)
ADMIN_KEY: web.AppKey[tuple[bytes, ...]] = web.AppKey("admin_key", tuple)
#: Anomalies, actions and series for the dashboard (views/dashboard.py); absent = detector off.
DASHBOARD_SOURCES: web.AppKey[DashboardSources] = web.AppKey("dashboard_sources")
#: Per-key request and token buckets (``rate_limits``).
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
#: The client's request, parsed and validated once (``switchgear.proxy.request``).
PARSED_REQUEST = web.RequestKey("parsed_request", ParsedRequest)
#: Tokens the answer reported (usage.total_tokens), for the rate limiter's settlement.
TOKENS_USED = web.RequestKey("tokens_used", int)
#: The rate limiter's settlement of this request (idempotent): a stream awaits it before its
#: end reaches the client, so the client's next request, on any gateway, sees the charge.
SETTLE: web.RequestKey[Callable[[], Awaitable[None]]] = web.RequestKey("settle")
#: Prompt and completion tokens of the answer, for the token metrics and the server span.
USAGE = web.RequestKey("usage", Usage)
#: OpenTelemetry tracing (``tracing``); a no-op unless ``tracing.enabled``.
TRACING = web.AppKey("tracing", Tracing)
#: Request bodies in flight in this process (``limits.max_body_bytes_in_flight``).
BODY_BUDGET = web.AppKey("body_budget", BodyBudget)
#: This process as a member of its fleet: shared limits, health and detector leadership
#: (``state``); the embedded default shares nothing.
FLEET = web.AppKey("fleet", FleetState)
#: Requests in flight and open streams, for the shutdown drain (proxy/drain.py).
DRAIN: web.AppKey[Drain] = web.AppKey("drain")
#: Active health checks of static backends (proxy/health_checks.py); absent when disabled.
HEALTH_CHECKS: web.AppKey[HealthChecker] = web.AppKey("health_checks")
#: Per-model scaling signals (desired replicas, capacity) for /metrics and KEDA.
CAPACITY: web.AppKey[Capacity] = web.AppKey("capacity")
#: Requests held for a model's first replica (scale from zero).
COLD_START: web.AppKey[ColdStart] = web.AppKey("cold_start")
#: Decision logs of the orchestrator scale plugins, merged into /admin/actions.
SCALE_DECISIONS: web.AppKey[list[DecisionLog]] = web.AppKey("scale_decisions", list)
#: The KEDA external scaler's gRPC server; absent unless ``scaling.keda.enabled``.
KEDA_SERVER: web.AppKey[KedaServer] = web.AppKey("keda_server")
#: Progressive rollouts of new models across workers (proxy/rollout.py).
ROLLOUTS: web.AppKey[Rollouts] = web.AppKey("rollouts")
