"""Constrained decoding for ``response_format`` (and forced tool calls) with
lm-format-enforcer: at each step only the tokens that keep the text a valid prefix of a JSON
document matching the schema may be sampled (docs/worker.md says why this library).

The tokenizer's token table is built once per tokenizer (on the preparing thread); each
request gets its own enforcer, which follows every row sampled for it by token prefix.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from switchgear.errors import InvalidRequest

_tables: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


class Constraint:
    """The allowed next tokens after a token sequence (prompt included)."""

    def __init__(
        self,
        tokenizer: Any,
        schema: dict[str, Any] | None,
        ends: frozenset[int] | set[int] = frozenset(),
    ) -> None:
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer

        table, self._partial = _table(tokenizer)
        self._enforcer = TokenEnforcer(table, JsonSchemaParser(schema))
        self._lock = threading.Lock()
        self._eos = tokenizer.eos_token_id
        # Every token that ends the answer (``<|im_end|>`` too): allowed only where the
        # document is complete. The enforcer knows only the tokenizer's EOS and would let
        # the others through inside a string.
        self._ends = set(ends) | ({self._eos} if self._eos is not None else set())

    def allowed(self, sequence: list[int]) -> list[int]:
        with self._lock:
            allowed = list(self._enforcer.get_allowed_tokens(sequence).allowed_tokens)
        complete = self._eos in allowed
        out = [t for t in allowed if t not in self._ends and t not in self._partial]
        return out + sorted(self._ends) if complete else out


def _table(tokenizer: Any) -> tuple[Any, frozenset[int]]:
    """The enforcer's token table, and the tokens that are only part of a character.

    A byte-level token holding part of a UTF-8 character decodes alone to U+FFFD; the
    enforcer would count it as a character of its own, and the text it follows then differs
    from the text the tokens decode to (a string's ``maxLength`` came out wrong and the
    enforcer dead-ended). Under a constraint only whole-character tokens are sampled, and no
    token with a control character (the enforcer let a raw newline into a string, which JSON
    forbids; whitespace between tokens is never needed).
    """
    from lmformatenforcer.integrations.transformers import build_token_enforcer_tokenizer_data

    with _lock:
        entry = _tables.get(tokenizer)
        if entry is None:
            partial = frozenset(i for i in range(len(tokenizer)) if _banned(tokenizer.decode([i])))
            entry = (build_token_enforcer_tokenizer_data(tokenizer), partial)
            _tables[tokenizer] = entry
        return entry


def _banned(text: str) -> bool:
    return "\ufffd" in text or any(ord(c) < 0x20 for c in text)


def schema_of(response_format: dict[str, Any] | None) -> tuple[bool, dict[str, Any] | None]:
    """``(constrained, schema)`` for an OpenAI ``response_format``; None schema = any JSON."""
    if not response_format:
        return False, None
    kind = response_format.get("type")
    if kind == "text":
        return False, None
    if kind == "json_object":
        return True, None
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest(
                "response_format.json_schema.schema must be a JSON schema object",
                param="response_format.json_schema.schema",
            )
        return True, schema
    raise InvalidRequest(
        f"response_format type {kind!r} is not supported (text, json_object, json_schema)",
        param="response_format.type",
    )


def check_schema(schema: dict[str, Any] | None, param: str) -> None:
    """Refuse (400) a schema the enforcer cannot follow, before anything is queued."""
    from lmformatenforcer import JsonSchemaParser

    try:
        JsonSchemaParser(schema)
    except Exception as exc:  # noqa: BLE001 - any failure means the schema is unusable
        raise InvalidRequest(f"unsupported JSON schema: {exc}", param=param) from None
