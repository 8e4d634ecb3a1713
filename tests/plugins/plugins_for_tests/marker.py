"""A module plugin loaded by name from config (``plugins.modules``) or a plugins directory."""

from __future__ import annotations

from typing import Any

from switchgear import hookimpl


@hookimpl
def rewrite_request(ctx: Any, body: dict[str, Any], backend: Any) -> dict[str, Any]:
    return {**body, "user": "marker"}
