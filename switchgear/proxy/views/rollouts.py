"""``POST /admin/rollouts`` (start a progressive rollout) and ``GET /admin/rollouts``.

The body: ``{"model": NAME, "path": CANDIDATE, "steps": [10, 50], "options": {...}}``;
``options``: ``step_seconds``, ``min_samples``, ``latency_ratio``, ``error_gap``,
``drain_timeout_s`` and what the workers' ``/admin/swap`` takes (``quantization``,
``dtype``, ``reference``, ``force``). 202 with the rollout; 404 for a model without
backends, 400 for bad input, 409 while a rollout of that model runs. Before any worker is
drained, every worker is asked what its swap would refuse without loading the model
(``/admin/swap/preflight``): a candidate path outside its model roots (403), missing (400),
or with no weights or no usable config (422) is answered with that status and the worker's
reason; an unreachable worker is 502. A candidate that loads but fails the gates ends the
rollout at the first worker as ``refused``, with the gates' reason.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from switchgear.bodies import read_json_object
from switchgear.errors import Conflict, InvalidRequest, ModelNotFound
from switchgear.proxy import keys
from switchgear.proxy.rollout import RolloutPlan
from switchgear.proxy.rollout_traffic import Rule


class RolloutOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step_seconds: float = Field(5.0, gt=0, le=3600)
    min_samples: int = Field(8, ge=1)
    latency_ratio: float = Field(2.0, gt=1)
    error_gap: float = Field(0.2, gt=0, le=1)
    drain_timeout_s: float = Field(30.0, gt=0, le=3600)
    quantization: str | None = None
    dtype: str | None = None
    reference: str | None = None
    force: StrictBool | list[str] = False


class RolloutBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    path: str = Field(min_length=1)
    steps: list[float] = Field(default_factory=lambda: [10.0, 50.0], min_length=1, max_length=10)
    options: RolloutOptions = Field(default_factory=RolloutOptions)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


def _plan(data: dict[str, Any]) -> RolloutPlan:
    try:
        body = RolloutBody.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidRequest(f"{param}: {first['msg']}", param=param) from None
    if any(not 0 < s <= 100 for s in body.steps):
        raise InvalidRequest("steps are percentages in (0, 100]", param="steps")
    if "\x00" in body.path or not body.path.strip():
        raise InvalidRequest("path is not a path", param="path")
    o = body.options
    swap = {
        k: v for k, v in o.model_dump(include={"quantization", "dtype", "reference"}).items() if v
    }
    if o.force:
        swap["force"] = o.force
    return RolloutPlan(
        model=body.model,
        path=body.path,
        steps=tuple(body.steps),
        step_seconds=o.step_seconds,
        drain_timeout_s=o.drain_timeout_s,
        rule=Rule(o.min_samples, o.latency_ratio, o.error_gap),
        swap=swap,
    )


async def start(request: web.Request) -> web.Response:
    data = await read_json_object(request, request.app[keys.SETTINGS].limits.max_body_bytes)
    plan = _plan(data)
    rollouts = request.app[keys.ROLLOUTS]
    if plan.model in rollouts.running:
        running = rollouts.running[plan.model]
        raise Conflict(
            f"a rollout of {plan.model} is already running ({running.id})", code="rollout_running"
        )
    backends = [
        b for b in request.app[keys.REGISTRY].backends(plan.model) if b.protocol == "openai"
    ]
    if not backends:
        raise ModelNotFound(f"no switchgear worker serves model {plan.model!r}", param="model")
    await rollouts.preflight(plan, backends)
    if plan.model in rollouts.running:  # started by another request during the preflight
        raise Conflict(f"a rollout of {plan.model} is already running", code="rollout_running")
    return _json(rollouts.start(plan, backends).to_dict(), 202)


async def listing(request: web.Request) -> web.Response:
    rows = [r.to_dict() for r in request.app[keys.ROLLOUTS].all()]
    return _json({"object": "list", "data": rows})


def setup(app: web.Application) -> None:
    app.router.add_post("/admin/rollouts", start)
    app.router.add_get("/admin/rollouts", listing)
