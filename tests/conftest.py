"""Fixtures shared by every part's tests. Part-specific fixtures live in each tests/<part>/conftest.py."""

from __future__ import annotations

import os
import socket

import pytest


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # py-consul silently prefers CONSUL_HTTP_TOKEN over token=; keys from a developer's
    # shell must not leak into tests either.
    for name in (
        "CONSUL_HTTP_TOKEN",
        "SWITCHGEAR_API_KEYS",
        "SWITCHGEAR_ADMIN_KEY",
        "SWITCHGEAR_LOAD_PLUGINS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


def free_port() -> int:
    """A free TCP port on loopback (for servers started in another process)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def unused_port() -> int:
    return free_port()


os.environ.setdefault("HF_HUB_OFFLINE", "1")
