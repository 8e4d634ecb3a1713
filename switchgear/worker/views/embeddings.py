"""POST /v1/embeddings (mean-pooled last hidden states)."""

from __future__ import annotations

import base64
import struct

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from switchgear.errors import ContextLengthExceeded, InvalidRequest
from switchgear.worker.decode import embed
from switchgear.worker.keys import SLOT
from switchgear.worker.views.common import check_model, encode, json_response, parse


class EmbeddingBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: str = "float"


async def embeddings(request: web.Request) -> web.Response:
    body: EmbeddingBody = await parse(request, EmbeddingBody)
    engine = await request.app[SLOT].current()
    bundle = engine.bundle
    check_model(request, body.model, bundle.name)
    raw = body.input
    if raw and isinstance(raw, list) and isinstance(raw[0], int):
        items: list[list[int]] = [list(raw)]
    elif raw and isinstance(raw, list) and isinstance(raw[0], list):
        items = [list(x) for x in raw]
    else:
        texts = [raw] if isinstance(raw, str) else [str(t) for t in raw]
        items = await engine.prepare(
            lambda b: [encode(b.tokenizer, t, b.context_length, "input") for t in texts]
        )
    if not items or any(not x for x in items):
        raise InvalidRequest("input must not be empty", param="input")
    for x in items:
        if len(x) > bundle.context_length:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {bundle.context_length} tokens; an input has "
                f"{len(x)} tokens.",
                param="input",
            )
    try:
        vectors = await engine.run(lambda b: embed(b, items))
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="model") from None
    data = []
    for i, v in enumerate(vectors):
        emb: object = v
        if body.encoding_format == "base64":
            emb = base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    tokens = sum(len(x) for x in items)
    return json_response(
        {
            "object": "list",
            "data": data,
            "model": bundle.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )
