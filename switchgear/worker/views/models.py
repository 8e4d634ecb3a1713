"""GET /v1/models (with the served model's metadata)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from switchgear.worker.keys import SLOT
from switchgear.worker.tools import template_takes_tools
from switchgear.worker.views.common import json_response


def model_card(bundle: Any, created: int = 0) -> dict[str, Any]:
    return {
        "id": bundle.name,
        "object": "model",
        "created": created,
        "owned_by": "switchgear",
        "metadata": {
            "context_length": bundle.context_length,
            "languages": list(bundle.spec.languages),
            "quantization": bundle.quantization,
            "dtype": bundle.dtype,
            "device": bundle.device,
            "format": bundle.fmt,
            "path": str(bundle.spec.model_name_or_path),
            # the chat endpoint accepts continue_final_message: gateways may resume here
            "supports_continuation": True,
            # tools through the chat template; response_format json_object / json_schema
            "supports_tools": template_takes_tools(getattr(bundle, "tokenizer", None)),
            "supports_json_output": True,
        },
    }


async def list_models(request: web.Request) -> web.Response:
    engine = await request.app[SLOT].current()
    return json_response({"object": "list", "data": [model_card(engine.bundle)]})
