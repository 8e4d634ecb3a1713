"""What the router and the rate limiter need to know about a prompt, without a tokenizer.

* :func:`prompt_text` — the text of an OpenAI request (chat messages, a completion prompt
  or an embeddings input).
* :func:`detect_language` — ``"zh"`` when Han characters are at least 30% of the text's
  "words", counting one Han character or four Latin letters as one, otherwise ``"en"``.
  A Chinese question about English code (``解释这段 Python code: print('hello')``) is ``zh``;
  an English prompt that mentions 长城 stays ``en``.
* :func:`estimate_tokens` — one token per CJK character (ChatGLM3, Baichuan2 and Llama 3
  tokenizers produce 0.7–1.5 per Han character) plus one per 3.5 other characters
  (BPE tokenizers average about four characters of English per token); so the estimate
  errs on the high side, which is the safe side for "never a model whose context is too
  short". Each chat message adds 4 tokens for its role markers, and a prompt given as
  token ids counts one token per id. :func:`estimate_prompt_tokens` is the gateway's one
  estimator: the router and the rate limiter both read it from the parsed request.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _table(*ranges: tuple[int, int]) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """A lookup table over the Basic Multilingual Plane: True for the inclusive ``ranges``."""
    table = np.zeros(0x10000, dtype=np.bool_)
    for lo, hi in ranges:
        table[lo : hi + 1] = True
    return table


_HAN_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))
# Han: CJK Unified Ideographs (+ extension A) and compatibility ideographs.
_HAN = _table(*_HAN_RANGES)
# CJK: Han, kana and hangul.
_CJK = _table(*_HAN_RANGES, (0x3040, 0x30FF), (0xAC00, 0xD7AF))
_LATIN = _table((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F))
MESSAGE_OVERHEAD = 4


def content_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def prompt_text(body: dict[str, Any], *, last_user_only: bool = False) -> str:
    messages = body.get("messages")
    if isinstance(messages, list):
        msgs = [m for m in messages if isinstance(m, dict)]
        if last_user_only:
            users = [m for m in msgs if m.get("role") == "user"]
            msgs = users[-1:]
        return "\n".join(content_text(m.get("content")) for m in msgs)
    prompt = body.get("prompt", body.get("input"))
    if isinstance(prompt, list):
        return "\n".join(str(p) for p in prompt if isinstance(p, str))
    return prompt if isinstance(prompt, str) else ""


def prompt_texts(body: dict[str, Any]) -> tuple[str, str]:
    """``prompt_text(body)`` and ``prompt_text(body, last_user_only=True)``, in one pass."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        text = prompt_text(body)
        return text, text
    parts: list[str] = []
    last: str | None = None
    for m in messages:
        if isinstance(m, dict):
            part = content_text(m.get("content"))
            parts.append(part)
            if m.get("role") == "user":
                last = part
    return "\n".join(parts), "" if last is None else last


def count_chars(text: str, table: np.ndarray[Any, np.dtype[np.bool_]]) -> int:
    """How many characters of ``text`` a BMP lookup ``table`` marks.

    Every request's prompt is counted (the token estimate), and a prompt may be megabytes:
    one table lookup over the UTF-16 code units is some 30 times faster than a regex scan.
    Characters beyond the BMP are two surrogate units, which no table marks.
    """
    if not text:
        return 0
    units = np.frombuffer(text.encode("utf-16-le", "surrogatepass"), dtype="<u2")
    return int(np.count_nonzero(table[units]))


def detect_language(text: str) -> str:
    han = 0 if text.isascii() else count_chars(text, _HAN)
    if han == 0:
        return "en"
    latin = count_chars(text, _LATIN)
    return "zh" if han / (han + latin / 4) >= 0.3 else "en"


def estimate_tokens(text: str) -> int:
    cjk = 0 if text.isascii() else count_chars(text, _CJK)
    other = len(text) - cjk
    return cjk + math.ceil(other / 3.5)


def estimate_prompt_tokens(body: dict[str, Any], text: str | None = None) -> int:
    """Estimated prompt tokens of a request, role markers included.

    ``text`` is ``prompt_text(body)`` when the caller has it already.
    """
    messages = body.get("messages")
    overhead = MESSAGE_OVERHEAD * len(messages) if isinstance(messages, list) else 0
    text = prompt_text(body) if text is None else text
    return estimate_tokens(text) + overhead + _token_ids(body.get("prompt", body.get("input")))


def _token_ids(prompt: Any) -> int:
    """Token ids in a prompt given as ids (``[1, 2]`` or ``[[1, 2], [3]]``)."""
    if not isinstance(prompt, list):
        return 0
    return sum(1 if isinstance(p, int) else len(p) if isinstance(p, list) else 0 for p in prompt)


def required_capabilities(body: dict[str, Any]) -> tuple[str, ...]:
    """Capabilities a request needs: ``tools``, ``json`` (JSON mode / schema), ``vision``."""
    caps: list[str] = []
    if body.get("tools") or body.get("functions"):
        caps.append("tools")
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        caps.append("json")
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list) and any(
            isinstance(p, dict) and p.get("type") == "image_url" for p in content
        ):
            caps.append("vision")
            break
    return tuple(caps)
