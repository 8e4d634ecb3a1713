"""Adapters that speak native backend protocols, with OpenAI shapes on the gateway's side.

``backend.protocol`` selects one:

===================================  ==========================================================
protocol                             adapter
===================================  ==========================================================
``openai``                           none here: passed through by the built-in OpenAI adapter
``tgi``                              :class:`~.tgi.TGIAdapter` (``/generate``, ``/generate_stream``)
``ollama``                           :class:`~.ollama.OllamaAdapter` (``/api/chat``)
``chatglm3`` ``baichuan2`` ``llama3``  :class:`~.completion.PromptFormatAdapter` with that format
``chatml`` ``plain``
``completions``                      :class:`~.completion.PromptFormatAdapter` with the model's
                                     ``prompt_format`` (backend meta, config or catalogue)
===================================  ==========================================================
"""

from __future__ import annotations

from switchgear.default_plugins.protocols.completion import PromptFormatAdapter
from switchgear.default_plugins.protocols.ollama import OllamaAdapter
from switchgear.default_plugins.protocols.prompt_formats import FORMATS, render
from switchgear.default_plugins.protocols.tgi import TGIAdapter
from switchgear.types import Adapter

__all__ = ["FORMATS", "OllamaAdapter", "PromptFormatAdapter", "TGIAdapter", "adapter_for", "render"]


def adapter_for(protocol: str, prompt_format: str | None) -> Adapter | None:
    """The adapter for a protocol name, or None when this package does not speak it."""
    if protocol == "tgi":
        return TGIAdapter(prompt_format or "plain")
    if protocol == "ollama":
        return OllamaAdapter()
    if protocol in FORMATS:
        return PromptFormatAdapter(protocol)
    if protocol == "completions" and prompt_format:
        return PromptFormatAdapter(prompt_format)
    return None
