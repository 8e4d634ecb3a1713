"""GET /v1/models and /v1/models/{id}: models some healthy backend serves, and their aliases.

Each entry is OpenAI's model object plus switchgear's metadata under the ``switchgear``
key: context length, languages and capabilities (from the model catalogue: config, the
built-in catalogue, backend meta such as Consul ``Service.Meta``, Consul KV), number of
healthy backends and their datacenters, the fallback chain.

Names a client may send besides models are listed too, because OpenAI clients validate a
model id against this list: routing aliases (``auto``; ``{"alias": true, "routing": true}``)
while some plugin implements ``select_model`` and some model is served, and model aliases
(``{"alias": true, "alias_of": model}``) whose model is served.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from switchgear.errors import ModelNotFound
from switchgear.proxy import keys


def _entry(name: str, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": "switchgear",
        "switchgear": meta,
    }


def served_models(app: web.Application) -> dict[str, dict[str, Any]]:
    registry, state = app[keys.REGISTRY], app[keys.BACKEND_STATE]
    infos = app[keys.CATALOG].refresh()
    out: dict[str, dict[str, Any]] = {}
    for name in registry.models():
        healthy = [b for b in registry.backends(name) if state.healthy(b.id)]
        if not healthy:
            continue
        info = infos.get(name)
        out[name] = _entry(
            name,
            {
                "context_length": info.context_length if info else None,
                "languages": list(info.languages) if info else [],
                "capabilities": list(info.capabilities) if info else [],
                "backends": len(healthy),
                "datacenters": sorted({b.datacenter for b in healthy}),
                "fallback": list(info.fallback) if info else [],
                "aliases": list(info.aliases) if info else [],
            },
        )
    served = list(out)
    for alias, model in sorted(app[keys.ALIASES].items()):
        if model in served and alias not in out:
            out[alias] = _entry(alias, {"alias": True, "alias_of": model})
    if served and app[keys.PLUGINS].hook.select_model.get_hookimpls():
        for alias in app[keys.SETTINGS].router.aliases:
            if alias not in out:
                out[alias] = _entry(alias, {"alias": True, "routing": True})
    return out


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


async def list_models(request: web.Request) -> web.Response:
    return _json({"object": "list", "data": list(served_models(request.app).values())})


async def get_model(request: web.Request) -> web.Response:
    name = request.match_info["model_id"]
    models = served_models(request.app)
    if name not in models:
        available = ", ".join(sorted(models)) or "none"
        raise ModelNotFound(
            f"The model `{name}` does not exist. Available models: {available}", param="model"
        )
    return _json(models[name])


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model_id:.+}", get_model)
