"""Alias kept for plugin authors: the adapters moved to :mod:`switchgear.default_plugins.protocols`.

``from switchgear.plugins.adapters import PromptFormatAdapter`` keeps working. Nothing in
switchgear imports this module; the layer test places it above the built-in plugins.
"""

from switchgear.default_plugins.protocols import (
    FORMATS,
    OllamaAdapter,
    PromptFormatAdapter,
    TGIAdapter,
    adapter_for,
    render,
)

__all__ = ["FORMATS", "OllamaAdapter", "PromptFormatAdapter", "TGIAdapter", "adapter_for", "render"]
