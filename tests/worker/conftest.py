"""Tiny models built once per session, and a factory for worker apps on loopback."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from switchgear.settings import Settings, parse_settings
from switchgear.worker.tiny import TinySpec, make_tiny

ADMIN = "admin-secret"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # optimum/onnx/quanto warn from their own modules about export internals and deprecated
    # torch APIs; the worker's own warnings stay errors.
    for item in items:
        if "tests/worker" in str(item.fspath):
            item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning:optimum.*"))
            item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning:onnxscript.*"))
            item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning:onnx.*"))
            item.add_marker(pytest.mark.filterwarnings("ignore::UserWarning:optimum.*"))
            item.add_marker(pytest.mark.filterwarnings("ignore::UserWarning:onnxruntime.*"))
            item.add_marker(pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"))


@pytest.fixture(scope="session", autouse=True)
def _torch_threads() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def _build(root: Path, name: str, spec: TinySpec) -> Path:
    out = root / name
    if not (out / "config.json").exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make_tiny(out, spec)
    return out


@pytest.fixture(scope="session")
def tiny(models_dir: Path) -> Path:
    return _build(models_dir, "tiny", TinySpec(seed=0))


@pytest.fixture(scope="session")
def tiny_seed1(models_dir: Path) -> Path:
    return _build(models_dir, "tiny-seed1", TinySpec(seed=1))


@pytest.fixture(scope="session")
def tiny_other_vocab(models_dir: Path) -> Path:
    return _build(models_dir, "tiny-other-vocab", TinySpec(seed=0, vocab=600))


@pytest.fixture(scope="session")
def tiny_onnx(models_dir: Path) -> Path:
    return _build(models_dir, "tiny-onnx", TinySpec(seed=0, fmt="onnx"))


@pytest.fixture(scope="session")
def tiny_format(models_dir: Path) -> Callable[[str, str], Path]:
    def build(fmt: str, arch: str = "llama") -> Path:
        return _build(models_dir, f"tiny-{arch}-{fmt}", TinySpec(seed=0, arch=arch, fmt=fmt))  # type: ignore[arg-type]

    return build


def worker_settings(path: Path | str, **worker: Any) -> Settings:
    model = {"model_name_or_path": str(path), "name": "tiny", "languages": ["en", "zh"]}
    model.update(worker.pop("model", {}))
    return parse_settings(
        {
            "auth": {"admin_key": ADMIN},
            "worker": {"model": model, "batch_wait_ms": 1, "watch_config": False, **worker},
        }
    )


@pytest.fixture
def plugin_manager() -> Any:
    from switchgear.plugins.manager import make_plugin_manager
    from switchgear.worker.app import register_gates

    pm = make_plugin_manager(
        load_entrypoints=False, builtins=["switchgear.default_plugins.quantization"]
    )
    register_gates(pm)
    return pm


@pytest.fixture
def start_worker(aiohttp_client: Any, plugin_manager: Any) -> Callable[..., Any]:
    """``await start_worker(settings)`` → a test client whose model is loaded."""
    from switchgear.worker.app import create_worker_app
    from switchgear.worker.keys import SLOT

    async def start(settings: Settings, *, pm: Any = None, config_path: str | None = None) -> Any:
        app = create_worker_app(
            settings, plugin_manager=pm or plugin_manager, config_path=config_path
        )
        client = await aiohttp_client(app, server_kwargs={"handler_cancellation": True})
        await app[SLOT].ready()
        return client

    return start


@pytest.fixture
async def client(start_worker: Callable[..., Any], tiny: Path) -> AsyncIterator[Any]:
    yield await start_worker(worker_settings(tiny))


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}"}
