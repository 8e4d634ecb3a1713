"""Fixtures shared by every part's tests. Part-specific fixtures live in each tests/<part>/conftest.py."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.helpers import free_port

__all__ = ["free_port"]


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


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client session for talking to servers the test started (closed after it)."""
    async with aiohttp.ClientSession() as session:
        yield session


os.environ.setdefault("HF_HUB_OFFLINE", "1")
