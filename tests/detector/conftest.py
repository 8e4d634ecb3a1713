"""Detector test fixtures: one torch thread (tests share two cores with everyone)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover - the ml extra is not installed
        return
    torch.set_num_threads(1)
