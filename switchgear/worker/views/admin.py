"""Admin routes (admin key, Bearer): /admin/swap, /admin/swap/preflight, /admin/rollback,
/admin/restart, /admin/backups, /admin/faults."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StrictBool

from switchgear.auth import bearer_token, match_key
from switchgear.errors import AuthenticationFailed, ConfigError, InvalidRequest, PermissionDenied
from switchgear.settings.worker import ModelSpec
from switchgear.worker.faults import Faults
from switchgear.worker.gates import parse_force
from switchgear.worker.keys import ADMIN_KEY, FAULTS, SETTINGS, SLOT, SWAP_LISTENERS
from switchgear.worker.loading import checkpoint_files, detect_format, model_path
from switchgear.worker.views.common import json_response, parse


class SwapBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_name_or_path: str
    quantization: str | None = None
    dtype: str | None = None
    name: str | None = None
    #: PyTorch weights the outputs gate compares an ONNX or quantized candidate with.
    reference: str | None = None
    #: ``true`` (every forcible gate) or the names of the gates whose failure is overridden.
    force: StrictBool | list[str] = False


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: A backup's index (0 is the newest), id, served name or path; unset: the newest.
    target: int | str | None = None


def require_admin(request: web.Request) -> None:
    admin = request.app[ADMIN_KEY]
    if not admin:
        raise PermissionDenied(
            "the admin API is disabled: set auth.admin_key or SWITCHGEAR_ADMIN_KEY"
        )
    if match_key(bearer_token(request.headers), admin) is None:
        raise AuthenticationFailed("invalid admin key")


def model_roots(app: web.Application) -> list[Path]:
    """``worker.model_roots``, or else the folder that holds the configured model."""
    worker = app[SETTINGS].worker
    if worker is None:
        return []
    if worker.model_roots:
        return [model_path(r) for r in worker.model_roots]
    return [model_path(worker.model.model_name_or_path).parent]


def check_root(app: web.Application, path: str, param: str = "model_name_or_path") -> None:
    """Refuse a swap path outside the model roots (``~``, ``..`` and symlinks resolved
    first, by :func:`~switchgear.worker.loading.model_path`, as the loader resolves it).

    ``/admin/swap`` is reachable over HTTP, so a leaked admin key must not load whatever
    the process can read (``/etc``, another tenant's weights, a pickle planted in /tmp).
    Swaps from the config file the operator edits are not checked.
    """
    if "\x00" in path or not path.strip():
        raise InvalidRequest(f"{param} is not a path", param=param)
    try:
        target = model_path(path)
    except (RuntimeError, OSError):  # "~nobody/x": no such user; a symlink loop
        raise InvalidRequest(f"{param} cannot be resolved", param=param) from None
    if not any(target == root or target.is_relative_to(root) for root in model_roots(app)):
        raise PermissionDenied(
            f"{param} is outside the configured model roots (worker.model_roots)", param=param
        )
    if not target.exists():
        raise InvalidRequest(f"{param}: {path} does not exist", param=param, code="model_not_found")


async def notify_swap(app: web.Application, report: dict[str, Any]) -> None:
    listeners = app[SWAP_LISTENERS]
    for listener in list(listeners):
        res = listener(app, report)
        if inspect.isawaitable(res):
            await res


async def swap_to(app: web.Application, body: SwapBody) -> dict[str, Any]:
    """Swap with the current spec's settings, overridden by what the body names."""
    slot = app[SLOT]
    base = slot.spec
    update: dict[str, Any] = {
        "model_name_or_path": body.model_name_or_path,
        "quantization": body.quantization,
    }
    if body.dtype:
        update["dtype"] = body.dtype
    update["name"] = body.name if body.name else (base.name if base else None)
    update["reference"] = body.reference
    try:
        force = parse_force(body.force)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="force") from None
    spec = ModelSpec.model_validate({**(base.model_dump() if base else {}), **update})
    report = await slot.swap(spec, force=force)
    out = report.to_dict()
    if report.ok:
        await notify_swap(app, out)
    return out


async def swap(request: web.Request) -> web.Response:
    require_admin(request)
    body: SwapBody = await parse(request, SwapBody)
    check_root(request.app, body.model_name_or_path)
    if body.reference:
        check_root(request.app, body.reference, "reference")
    out = await swap_to(request.app, body)
    return json_response(out, 200 if out["ok"] else 422)


def _loadable(path: str, param: str, trust_remote_code: bool) -> dict[str, Any]:
    """What a swap would find at ``path`` without loading it: format, weight files and a
    config that parses (run on a thread: it reads the disk)."""
    from transformers import AutoConfig

    try:
        fmt, directory = detect_format(model_path(path))
        files = checkpoint_files(model_path(path), fmt)
        if not files:
            raise ConfigError(param, f"{path} holds no {fmt} weight files")
        config = AutoConfig.from_pretrained(str(directory), trust_remote_code=trust_remote_code)
    except ConfigError as exc:
        raise InvalidRequest(
            exc.reason, param=param, code="model_not_loadable", status=422
        ) from None
    except (OSError, ValueError) as exc:  # no or broken config.json, unknown model_type
        raise InvalidRequest(
            f"{param}: {path} has no usable config: {exc}".splitlines()[0],
            param=param,
            code="model_not_loadable",
            status=422,
        ) from None
    return {"format": fmt, "files": len(files), "model_type": config.model_type}


async def preflight(request: web.Request) -> web.Response:
    """What ``/admin/swap`` would refuse before loading anything: a path outside the model
    roots (403), a missing path (400), no weights or no usable config (422). 200 with the
    candidate's format and model type otherwise; the gates still judge the loaded model."""
    require_admin(request)
    body: SwapBody = await parse(request, SwapBody)
    spec = request.app[SLOT].spec
    trust = bool(spec and spec.trust_remote_code)
    check_root(request.app, body.model_name_or_path)
    found = await asyncio.to_thread(_loadable, body.model_name_or_path, "model_name_or_path", trust)
    if body.reference:
        check_root(request.app, body.reference, "reference")
        await asyncio.to_thread(_loadable, body.reference, "reference", trust)
    out = {"ok": True, **found}
    return json_response(out)


async def restart(request: web.Request) -> web.Response:
    """Reload the engine from the current model spec (the swap path: requests in flight
    finish on the old engine, new ones wait for the new one)."""
    require_admin(request)
    slot = request.app[SLOT]
    if slot.spec is None:
        raise InvalidRequest("no model is loaded to restart")
    report = await slot.swap(slot.spec, force=True, verify=False)
    out = report.to_dict()
    return json_response(out, 200 if report.ok else 422)


async def rollback(request: web.Request) -> web.Response:
    require_admin(request)
    body = await parse(request, RollbackBody) if request.body_exists else RollbackBody()
    report = await request.app[SLOT].rollback(body.target)
    out = report.to_dict()
    if report.ok:
        await notify_swap(request.app, out)
    return json_response(out, 200 if report.ok else 422)


async def backups(request: web.Request) -> web.Response:
    require_admin(request)
    entries = request.app[SLOT].history.entries()
    return json_response({"data": [b.to_dict(i) for i, b in enumerate(entries)]})


async def get_faults(request: web.Request) -> web.Response:
    require_admin(request)
    return json_response(request.app[FAULTS].model_dump())


async def set_faults(request: web.Request) -> web.Response:
    require_admin(request)
    body: Faults = await parse(request, Faults)
    faults = request.app[FAULTS]
    faults.set_from(body)
    return json_response(faults.model_dump())
