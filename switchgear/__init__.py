"""switchgear: one OpenAI-compatible endpoint in front of many self-hosted model backends."""

from switchgear.plugins.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
