"""What a request may ask of the worker: every field is either implemented or refused.

A field that a body model does not declare lands in ``model_extra``; any such field with a
value is refused with 400 ``unsupported_parameter`` naming it, so nothing is silently ignored.
Also here: the OpenAI shapes of log-probabilities and the sampling parameters of ``n`` choices.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel

from switchgear.errors import InvalidRequest
from switchgear.worker.generation import SamplingParams, TokenLogprob


def refuse_unknown(body: BaseModel) -> None:
    for key, value in (body.model_extra or {}).items():
        if value is not None:
            raise InvalidRequest(
                f"the parameter {key!r} is not supported by this worker",
                param=key,
                code="unsupported_parameter",
            )
    options = getattr(body, "stream_options", None) or {}
    for key in options:
        if key != "include_usage":
            raise InvalidRequest(
                f"stream_options.{key} is not supported by this worker",
                param=f"stream_options.{key}",
                code="unsupported_parameter",
            )


def logit_bias(bias: dict[str, float] | None, vocab: int) -> tuple[tuple[int, float], ...]:
    out: list[tuple[int, float]] = []
    for key, value in (bias or {}).items():
        if not key.isdigit() or int(key) >= vocab:
            raise InvalidRequest(
                f"logit_bias: {key!r} is not a token id of this model", param="logit_bias"
            )
        if not -100 <= value <= 100:
            raise InvalidRequest("logit_bias values must be in [-100, 100]", param="logit_bias")
        out.append((int(key), float(value)))
    return tuple(out)


def per_choice(params: SamplingParams, n: int) -> list[SamplingParams]:
    """``n`` copies of ``params``; with a seed, choice ``i`` samples with ``seed + i``."""
    if params.seed is None:
        return [params] * n
    return [dataclasses.replace(params, seed=params.seed + i) for i in range(n)]


def _bytes(text: str) -> list[int]:
    return list(text.encode("utf-8", "replace"))


def chat_logprobs(items: list[TokenLogprob]) -> dict[str, Any]:
    """``choice.logprobs`` of a chat completion (or of one streamed chunk)."""
    return {
        "content": [
            {
                "token": t.token,
                "logprob": t.logprob,
                "bytes": _bytes(t.token),
                "top_logprobs": [
                    {"token": s, "logprob": lp, "bytes": _bytes(s)} for s, lp in t.top
                ],
            }
            for t in items
        ],
        "refusal": None,
    }


def text_logprobs(items: list[TokenLogprob], offset: int = 0) -> dict[str, Any]:
    """``choice.logprobs`` of a text completion (legacy shape)."""
    offsets, at = [], offset
    for t in items:
        offsets.append(at)
        at += len(t.token)
    return {
        "tokens": [t.token for t in items],
        "token_logprobs": [t.logprob for t in items],
        "top_logprobs": [dict(t.top) for t in items],
        "text_offset": offsets,
    }
