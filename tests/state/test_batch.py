"""Rate-limit checks of one event-loop turn: one EVALSHA of one combined script."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.exceptions import ResponseError

from switchgear.settings.state import StateSettings
from switchgear.state.limits import RedisLimits
from switchgear.state.metrics import StateMetrics
from switchgear.state.store import RedisStore

# (key, rpm, tpm, tokens) takes and ("settle", key, tpm, estimated, used), in order. Each key
# is named with a per-run prefix so the one-by-one and the batched run start from empty buckets.
CHECKS: list[tuple[Any, ...]] = [
    ("take", "a", 2, 0, 1),  # a: 2 requests/minute -> ok, ok, refused (requests)
    ("take", "b", 100, 1000, 600),  # b: 1000 tokens/minute, 600 a request -> ok
    ("take", "a", 2, 0, 1),
    ("take", "c", 0, 0, 5),  # c: no limit -> always ok
    ("take", "b", 100, 1000, 600),  # -> refused (tokens)
    ("take", "a", 2, 0, 1),  # -> refused (requests)
    ("settle", "b", 1000, 600, 0),  # b's first request used nothing: its 600 come back
    ("take", "b", 100, 1000, 600),  # -> ok again, only because the settle ran before it
    ("take", "d", 1, 0, 1),  # d: 1 request/minute -> ok, refused
    ("take", "c", 0, 0, 5),
    ("take", "d", 1, 0, 1),
]


def expected_refusals() -> list[str | None]:
    return [None, None, None, None, "tokens", "requests", None, None, None, None, "requests"]


@pytest.fixture
async def store(redis_server) -> AsyncIterator[RedisStore]:
    settings = StateSettings(redis_url=redis_server.url, key_prefix="t", timeout_s=5.0)
    s = RedisStore(settings, StateMetrics())
    yield s
    await s.aclose()


def run_check(limits: RedisLimits, run: str, check: tuple[Any, ...]) -> Any:
    if check[0] == "take":
        _, key, rpm, tpm, tokens = check
        return limits.take(f"{run}-{key}", rpm, tpm, tokens)
    _, key, tpm, estimated, used = check
    return limits.settle(f"{run}-{key}", tpm, estimated, used)


def evalsha_calls(redis_server) -> tuple[int, int]:
    """EVALSHA calls Redis answered, and those it refused (NOSCRIPT)."""
    with redis_server.client() as c:
        stats = c.info("commandstats").get("cmdstat_evalsha", {})
    failed = int(stats.get("failed_calls", 0))
    return int(stats.get("calls", 0)) - failed, failed


def evalsha_since(redis_server, before: tuple[int, int]) -> tuple[int, int]:
    now = evalsha_calls(redis_server)
    return now[0] - before[0], now[1] - before[1]


def refusal(answer: Any) -> str | None:
    return None if answer is None else answer[0]


async def test_a_batch_of_mixed_checks_answers_as_the_same_checks_one_by_one(redis_server, store):
    limits = RedisLimits(store)

    before = evalsha_calls(redis_server)
    one_by_one = [await run_check(limits, "seq", c) for c in CHECKS]
    assert evalsha_since(redis_server, before) == (len(CHECKS), 2)  # 2 scripts loaded once

    before = evalsha_calls(redis_server)
    batched = await asyncio.gather(*(run_check(limits, "batch", c) for c in CHECKS))
    # The whole turn in one EVALSHA (refused once: the combined script was not loaded yet).
    assert evalsha_since(redis_server, before) == (1, 1)

    assert [refusal(a) for a in one_by_one] == expected_refusals()
    assert [refusal(a) for a in batched] == expected_refusals()
    for seq, bat in zip(one_by_one, batched, strict=True):
        if seq is not None:  # Retry-After: the same up to the time between the two runs
            assert 0 < bat[1] <= 60 and abs(seq[1] - bat[1]) < 2.0, (seq, bat)

    # After SCRIPT FLUSH (as after a Redis restart) the batch loads its script again.
    with redis_server.client() as c:
        c.script_flush()
    before = evalsha_calls(redis_server)
    again = await asyncio.gather(*(run_check(limits, "flushed", c) for c in CHECKS))
    assert [refusal(a) for a in again] == expected_refusals()
    assert evalsha_since(redis_server, before) == (1, 1)  # NOSCRIPT, loaded, sent again
    assert store.metrics.errors.collect()[0].samples == []  # no failure was counted


async def test_one_failing_check_fails_alone_and_the_store_stays_up(redis_server, store):
    limits = RedisLimits(store)
    with redis_server.client() as c:
        c.lpush("t:rl:bad:r", "x")  # not a number: GET answers WRONGTYPE inside the script
    good, bad, other = await asyncio.gather(
        limits.take("good", 1, 0, 1),
        limits.take("bad", 1, 0, 1),
        limits.take("good", 1, 0, 1),
        return_exceptions=True,
    )
    assert good is None
    assert isinstance(bad, ResponseError) and "WRONGTYPE" in str(bad)
    assert other is not None and other[0] == "requests"
    assert store.metrics.errors.collect()[0].samples == []


async def test_lone_calls_of_successive_turns_after_a_script_flush_all_answer(redis_server, store):
    """Calls of successive turns, each of which may have to load its script again (NOSCRIPT)
    while the next turns' calls are sent: every one answers, exactly."""
    limits = RedisLimits(store)
    assert await limits.take("warm", 100, 0, 1) is None
    with redis_server.client() as c:
        c.script_flush()
    tasks = []
    for i in range(20):
        tasks.append(asyncio.create_task(limits.take(f"s{i % 5}", 4, 0, 1)))
        await asyncio.sleep(0)  # each in a turn of its own
    answers = await asyncio.gather(*tasks)
    assert [refusal(a) for a in answers] == [None] * 20  # 4 a minute for each of 5 keys
    assert refusal(await limits.take("s0", 4, 0, 1)) == "requests"
