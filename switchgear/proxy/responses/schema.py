"""The JSON Schema of a Responses API request, as the gateway checks it (for ``/openapi.json``).

It describes exactly what :func:`switchgear.proxy.responses.request.validate` and the
translation refuse; unknown fields pass (and are left out of the chat translation).
"""

from __future__ import annotations

from typing import Any

#: The JSON Schema of what :func:`validate` checks (for ``/openapi.json``); unknown fields pass.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["model", "input"],
    "additionalProperties": True,
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "input": {
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "minItems": 1, "items": {"type": "object"}},
            ]
        },
        "instructions": {"type": ["string", "null"]},
        "stream": {"type": "boolean"},
        "max_output_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "tools": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "name"],
                "properties": {"type": {"enum": ["function"]}, "name": {"type": "string"}},
            },
        },
        "tool_choice": {
            "anyOf": [
                {"enum": ["auto", "none", "required"]},
                {
                    "type": "object",
                    "required": ["type", "name"],
                    "properties": {"type": {"enum": ["function"]}, "name": {"type": "string"}},
                },
            ]
        },
        "text": {"type": "object"},
    },
}
