"""Chat messages rendered as one prompt string, for backends that only complete text.

Each format follows its model's own chat template (the tokenizer's ``build_chat_input`` or
``chat_template``), ends with the assistant's turn opened, and lists the strings that end
the assistant's turn as ``stop`` sequences.

=========  =====================================================================  ===============
format     shape                                                                  stop
=========  =====================================================================  ===============
chatglm3   ``[gMASK]sop<|system|>\\n…<|user|>\\n…<|assistant|>``                   <|user|>, <|observation|>
baichuan2  ``{system}<reserved_106>{user}<reserved_107>{assistant}…<reserved_107>``  <reserved_106>, </s>
llama3     ``<|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\n…<|eot_id|>``  <|eot_id|>
chatml     ``<|im_start|>user\\n…<|im_end|>\\n<|im_start|>assistant\\n``               <|im_end|>
plain      ``System: …\\nUser: …\\nAssistant:``                                     \\nUser:
=========  =====================================================================  ===============
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from switchgear.errors import InvalidRequest
from switchgear.proxy.text import content_text


@dataclass(frozen=True, slots=True)
class PromptFormat:
    name: str
    render: Callable[[Sequence[dict[str, Any]]], str]
    stop: tuple[str, ...]


def _turns(messages: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    turns = []
    for m in messages:
        role = m.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant", "tool"):
            raise InvalidRequest(f"unsupported message role {role!r}", param="messages")
        turns.append((str(role), content_text(m.get("content"))))
    return turns


def _chatglm3(messages: Sequence[dict[str, Any]]) -> str:
    role_name = {"tool": "observation"}
    parts = ["[gMASK]sop"]
    parts += [f"<|{role_name.get(r, r)}|>\n{c}" for r, c in _turns(messages)]
    return "".join(parts) + "<|assistant|>"


def _baichuan2(messages: Sequence[dict[str, Any]]) -> str:
    parts = []
    for role, content in _turns(messages):
        if role == "system":
            parts.append(content)
        elif role == "assistant":
            parts.append(f"<reserved_107>{content}")
        else:
            parts.append(f"<reserved_106>{content}")
    return "".join(parts) + "<reserved_107>"


def _llama3(messages: Sequence[dict[str, Any]]) -> str:
    role_name = {"tool": "ipython"}
    parts = ["<|begin_of_text|>"]
    for role, content in _turns(messages):
        parts.append(
            f"<|start_header_id|>{role_name.get(role, role)}<|end_header_id|>\n\n{content.strip()}<|eot_id|>"
        )
    return "".join(parts) + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def _chatml(messages: Sequence[dict[str, Any]]) -> str:
    body = "".join(f"<|im_start|>{r}\n{c}<|im_end|>\n" for r, c in _turns(messages))
    return body + "<|im_start|>assistant\n"


def _plain(messages: Sequence[dict[str, Any]]) -> str:
    body = "".join(f"{r.capitalize()}: {c}\n" for r, c in _turns(messages))
    return body + "Assistant:"


FORMATS: dict[str, PromptFormat] = {
    f.name: f
    for f in (
        PromptFormat("chatglm3", _chatglm3, ("<|user|>", "<|observation|>")),
        PromptFormat("baichuan2", _baichuan2, ("<reserved_106>", "</s>")),
        PromptFormat("llama3", _llama3, ("<|eot_id|>",)),
        PromptFormat("chatml", _chatml, ("<|im_end|>",)),
        PromptFormat("plain", _plain, ("\nUser:",)),
    )
}


def get_format(name: str) -> PromptFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown prompt format {name!r}; known: {', '.join(FORMATS)}") from None


def render(name: str, messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list", param="messages")
    return get_format(name).render(messages)


def strip_stop(text: str, stops: Sequence[str]) -> str:
    """Text up to the first stop sequence (backends that return the stop text with the answer)."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return text[:cut] if cut >= 0 else text
