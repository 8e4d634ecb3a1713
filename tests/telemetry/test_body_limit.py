"""Vision-sized bodies: the default limit takes a 25 MB base64 image; beyond it is a 413;
the bodies held at once are bounded (503 with Retry-After past the budget)."""

from __future__ import annotations

import asyncio
import base64
import os

import openai
import pytest

from switchgear.proxy import keys
from switchgear.settings import Settings
from tests.helpers import poll_until
from tests.telemetry.conftest import BigUpstream

MIB = 1024 * 1024


def _image_message(n_bytes: int) -> list[dict[str, object]]:
    """A user message with a PNG-typed data URL of ``n_bytes`` of base64."""
    raw = os.urandom(n_bytes * 3 // 4)
    url = "data:image/png;base64," + base64.b64encode(raw).decode()
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is on this screen?"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]


def test_the_default_limit_fits_openais_largest_image():
    limits = Settings().limits
    assert limits.max_body_bytes == 32 * MIB
    # OpenAI takes images up to 20 MB; base64 makes that 4/3 as large
    assert limits.max_body_bytes > 20_000_000 * 4 // 3
    assert limits.max_body_bytes_in_flight >= limits.max_body_bytes


async def test_a_25_mb_image_passes_and_a_larger_body_is_413(gateway, big_upstream: BigUpstream):
    gw = await gateway(
        {"backends": [{"model": "vision", "url": big_upstream.url}], "timeouts": {"total": 60}}
    )
    image = _image_message(25 * 1000 * 1000)
    async with gw.openai(timeout=60) as client:
        answer = await client.chat.completions.create(model="vision", messages=image)
        assert answer.choices[0].message.content == "a phone screen"
        assert big_upstream.images == [len(image[0]["content"][1]["image_url"]["url"])]  # type: ignore[index]
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="vision", messages=_image_message(33 * MIB))
    err = caught.value
    assert err.status_code == 413
    assert err.code == "request_too_large" and err.type == "invalid_request_error"
    assert "limit is 33554432" in err.message
    assert len(big_upstream.sizes) == 1  # nothing of the refused body reached the backend
    assert gw.app[keys.BODY_BUDGET].used == 0


async def test_bodies_in_flight_are_bounded(gateway, big_upstream: BigUpstream):
    limits = {"max_body_bytes": 3 * MIB, "max_body_bytes_in_flight": 5 * MIB}
    gw = await gateway(
        {"backends": [{"model": "vision", "url": big_upstream.url}], "limits": limits}
    )
    big_upstream.hold = True
    image = _image_message(2 * MIB)
    async with gw.openai() as client:
        held = [
            asyncio.create_task(client.chat.completions.create(model="vision", messages=image))
            for _ in range(2)
        ]
        await poll_until(lambda: big_upstream.waiting == 2, what="two bodies held upstream")
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="vision", messages=image)
        err = caught.value
        assert err.status_code == 503 and err.code == "overloaded"
        assert err.response.headers["Retry-After"] == "1"
        # a small request still fits the rest of the budget
        big_upstream.hold = False
        small = await client.chat.completions.create(
            model="vision", messages=[{"role": "user", "content": "hi"}]
        )
        assert small.choices[0].message.content == "a phone screen"
        big_upstream.release.set()
        answers = await asyncio.gather(*held)
    assert [a.choices[0].finish_reason for a in answers] == ["stop", "stop"]
    assert gw.app[keys.BODY_BUDGET].used == 0
    assert gw.app[keys.BODY_BUDGET].refused == 1
