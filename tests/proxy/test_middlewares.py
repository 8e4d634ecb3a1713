"""The middlewares an app runs: those that would do nothing under its settings are left out."""

from __future__ import annotations

import pytest

from switchgear.proxy import middlewares as mw
from switchgear.settings import Settings


@pytest.mark.parametrize(
    ("config", "skipped"),
    [
        ({}, {"tracing", "rate_limit"}),
        ({"tracing": {"enabled": True, "exporter": "none"}}, {"rate_limit"}),
        ({"rate_limits": {"requests_per_minute": 5}}, {"tracing"}),
        ({"rate_limits": {"keys": {"key-0": {"tokens_per_minute": 9}}}}, {"tracing"}),
    ],
)
def test_idle_middlewares_are_left_out(config: dict[str, object], skipped: set[str]) -> None:
    chain = mw.middlewares(Settings.model_validate(config))
    names = [m.__name__ for m in chain]
    assert names == [m.__name__ for m in mw.MIDDLEWARES if m.__name__ not in skipped]
