"""The worker's edge: preparing prompts off the event loop, context length, body nesting,
key checks and the swap path check."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from switchgear.bodies import MAX_DEPTH
from switchgear.settings import parse_settings
from switchgear.worker.keys import SLOT
from switchgear.worker.loading import model_path
from switchgear.worker.views.admin import check_root
from tests.worker.conftest import ADMIN, admin_headers, worker_settings

MARK = "hold-the-tokenizer"


def nested(levels: int) -> bytes:
    """A completion body whose unknown field nests arrays down to depth ``levels``."""
    arrays = levels - 1
    head = b'{"prompt": "Hello", "max_tokens": 1, "x_unknown": '
    return head + b"[" * arrays + b"]" * arrays + b"}"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {"prompt": f"{MARK} hello", "max_tokens": 1}),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": MARK}], "max_tokens": 1},
        ),
        ("/v1/embeddings", {"input": MARK}),
    ],
)
async def test_tokenizing_leaves_the_event_loop_free(
    client: Any, monkeypatch: pytest.MonkeyPatch, path: str, body: dict[str, Any]
) -> None:
    # The tokenizer blocks on MARK until the test has had /health answered. Were it called on
    # the event loop, /health could not answer and the tokenizer would wait out its timeout.
    tokenizer = client.app[SLOT].engine.bundle.tokenizer
    entered, release = threading.Event(), threading.Event()
    released_in_time: list[bool] = []
    real_call = type(tokenizer).__call__

    def held(self: Any, text: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(text, str) and MARK in text:
            entered.set()
            released_in_time.append(release.wait(timeout=10))
        return real_call(self, text, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), "__call__", held)
    request = asyncio.create_task(client.post(path, json=body))
    try:
        assert await asyncio.to_thread(entered.wait, 10)
        async with asyncio.timeout(5):
            health = await client.get("/health")
        assert health.status == 200
    finally:
        release.set()
    resp = await request
    assert resp.status == 200, await resp.text()
    assert released_in_time == [True]


async def test_validating_a_large_body_leaves_the_event_loop_free(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As above, for the validation of a body over common._INLINE_BYTES (60,000 messages took
    # seconds): it blocks until /health has answered.
    from switchgear.worker.views import common

    entered, release = threading.Event(), threading.Event()
    released_in_time: list[bool] = []
    real_validate = common._validate

    def held(model: Any, data: dict[str, Any]) -> Any:
        entered.set()
        released_in_time.append(release.wait(timeout=10))
        return real_validate(model, data)

    monkeypatch.setattr(common, "_validate", held)
    messages = [{"role": "user", "content": "x" * 100} for _ in range(1000)]
    assert len(str(messages)) > common._INLINE_BYTES
    request = asyncio.create_task(client.post("/v1/chat/completions", json={"messages": messages}))
    try:
        assert await asyncio.to_thread(entered.wait, 10)
        async with asyncio.timeout(5):
            health = await client.get("/health")
        assert health.status == 200
    finally:
        release.set()
    resp = await request
    assert resp.status == 400  # 1000 messages of 100 characters exceed the context
    assert (await resp.json())["error"]["code"] == "context_length_exceeded"
    assert released_in_time == [True]


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions", "/v1/embeddings"])
async def test_a_huge_prompt_is_refused_after_tokenizing_only_a_prefix(
    client: Any, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    from switchgear.worker.views import common

    bundle = client.app[SLOT].engine.bundle
    tokenizer = bundle.tokenizer
    lengths: list[int] = []
    real_call = type(tokenizer).__call__

    def measured(self: Any, text: Any, *args: Any, **kwargs: Any) -> Any:
        lengths.append(len(text))
        return real_call(self, text, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), "__call__", measured)
    huge = "hello world " * 100_000  # 1.2 MB
    body = {
        "/v1/completions": {"prompt": huge, "max_tokens": 1},
        "/v1/chat/completions": {"messages": [{"role": "user", "content": huge}]},
        "/v1/embeddings": {"input": huge},
    }[path]
    resp = await client.post(path, data=io.BytesIO(orjson.dumps(body)))
    assert resp.status == 400
    err = (await resp.json())["error"]
    assert err["code"] == "context_length_exceeded" and str(bundle.context_length) in err["message"]
    assert lengths and max(lengths) <= bundle.context_length * common._PREFIX_CHARS_PER_TOKEN


async def test_chat_longer_than_the_context_is_400_before_generating(client: Any) -> None:
    engine = client.app[SLOT].engine
    messages = [{"role": "user", "content": f"message number {i}"} for i in range(2000)]
    resp = await client.post("/v1/chat/completions", json={"messages": messages})
    assert resp.status == 400
    err = (await resp.json())["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == "context_length_exceeded"
    assert err["param"] == "messages" and str(engine.bundle.context_length) in err["message"]
    assert engine.load == 0  # nothing was queued for generation


async def test_deep_nesting_is_400(client: Any) -> None:
    for levels in (MAX_DEPTH + 1, 255, 300, 1000, 1023, 1024, 5000):
        resp = await client.post("/v1/completions", data=nested(levels))
        assert resp.status == 400, (levels, await resp.text())
        err = (await resp.json())["error"]
        assert err["type"] == "invalid_request_error" and "nested too deeply" in err["message"]


async def test_nesting_at_the_limit_is_served(client: Any) -> None:
    # The body is parsed at the limit: what answers is the refusal of the unknown field
    # (nothing is silently ignored), not the depth limit.
    resp = await client.post("/v1/completions", data=nested(MAX_DEPTH))
    assert resp.status == 400, await resp.text()
    error = (await resp.json())["error"]
    assert (error["param"], error["code"]) == ("x_unknown", "unsupported_parameter")


async def test_every_api_key_is_compared(
    start_worker: Any, tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import switchgear.auth as auth

    settings = parse_settings(
        {
            "auth": {"admin_key": ADMIN, "api_keys": ["sk-one", "sk-two", "sk-three"]},
            "worker": {
                "model": {"model_name_or_path": str(tiny), "name": "tiny"},
                "batch_wait_ms": 1,
                "watch_config": False,
            },
        }
    )
    client = await start_worker(settings)
    compared: list[int] = []
    real = auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(len(a))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    for key, status in (("sk-one", 200), ("sk-three", 200), ("sk-on", 401), (None, 401)):
        compared.clear()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        resp = await client.get("/v1/models", headers=headers)
        assert resp.status == status
        assert compared == [32, 32, 32]  # all three keys, as digests of one length
    resp = await client.post("/admin/faults", json={}, headers={"Authorization": "Bearer sk-one"})
    assert resp.status == 401


async def test_swap_path_with_tilde_cannot_leave_the_model_roots(
    start_worker: Any, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker runs from inside its model root; "~/x" must be checked where it is loaded
    # ($HOME/x, outside), not as the relative path "<cwd>/~/x" (inside).
    home = tmp_path / "home"
    (home / "tiny").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tiny.parent)
    client = await start_worker(worker_settings(tiny))
    resp = await client.post(
        "/admin/swap", json={"model_name_or_path": "~/tiny"}, headers=admin_headers()
    )
    assert resp.status == 403, await resp.text()
    err = (await resp.json())["error"]
    assert err["type"] == "permission_error" and err["param"] == "model_name_or_path"
    assert client.app[SLOT].spec.model_name_or_path == str(tiny)

    # Inside the roots, "~" is allowed, and it names what the loader loads.
    monkeypatch.setenv("HOME", str(tiny.parent))
    check_root(client.app, "~/tiny")
    assert model_path("~/tiny") == await asyncio.to_thread(tiny.resolve)
    resp = await client.post(
        "/admin/swap", json={"model_name_or_path": "~nosuchuser-x/tiny"}, headers=admin_headers()
    )
    assert resp.status == 400, await resp.text()
