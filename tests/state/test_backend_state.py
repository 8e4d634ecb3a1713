"""BackendState's fleet surface: transitions reported once, remote ones applied without echo."""

from __future__ import annotations

import pytest

from switchgear.errors import ConfigError
from switchgear.proxy.breaker import BackendState
from switchgear.settings import parse_settings


def test_transitions_are_reported_once_and_remote_ones_never_echo():
    now = [100.0]
    state = BackendState(failures=2, cooldown=10, clock=lambda: now[0])
    seen: list[tuple[str, str, str]] = []
    state.on_change = lambda *change: seen.append(change)
    state.failure("b", "connect")
    state.failure("b", "connect")  # opens
    state.failure("b", "connect")  # already open: no second report
    state.success("b")  # closes
    state.success("b")  # already closed
    state.eject("b", "")
    state.readmit("b", "admin")
    assert seen == [
        ("b", "open", "connect"),
        ("b", "close", ""),
        ("b", "eject", "ejected"),
        ("b", "readmit", "admin"),
    ]
    seen.clear()
    state.apply("c", "open", "", age_s=4.0)  # opened 4 s ago on another gateway
    assert not state.healthy("c")
    now[0] += 6.0  # its cool-down (10 s) ran out here too
    assert state.healthy("c")
    state.apply("c", "eject", "detector: latency")
    assert state.ejected_ids() == {"c": "detector: latency"}
    state.apply("c", "readmit", "")
    state.apply("c", "close", "")
    assert state.ejected_ids() == {} and state.describe("c")["breaker"] == "closed"
    assert seen == []


def test_state_settings_are_validated_with_the_key_named():
    with pytest.raises(ConfigError) as info:
        parse_settings({"state": {"redis_url": "http://localhost:6379"}})
    assert "state.redis_url" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_settings({"state": {"leader_ttl_s": 0.1}})
    assert "state.leader_ttl_s" in str(info.value)
    assert parse_settings({}).state.redis_url is None
