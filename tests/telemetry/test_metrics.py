"""/metrics after real requests: statuses (refusals too), tokens per model and key id,
TTFT and time per output token, and label values that stay bounded."""

from __future__ import annotations

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.telemetry.conftest import backends

KEYS = ["sk-alpha-secret", "sk-beta-secret"]


async def _scrape(http, gw) -> tuple[str, dict[str, list[tuple[dict[str, str], float]]]]:
    async with http.get(gw.url + "/metrics") as r:
        text = await r.text()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return text, samples


def _value(samples, name: str, **labels: str) -> float:
    return sum(v for got, v in samples.get(name, []) if labels.items() <= got.items())


async def test_metrics_count_refusals_tokens_and_timings(upstream, gateway, http):
    up = await upstream("m1", name="a", chunks=4)
    config = {
        "backends": backends(up),
        "auth": {"api_keys": KEYS},
        "limits": {"max_body_bytes": 4096},
        "rate_limits": {"keys": {"key-1": {"requests_per_minute": 1}}},
    }
    gw = await gateway(config)
    hi = [{"role": "user", "content": "hi"}]
    async with gw.openai(api_key=KEYS[0]) as alpha, gw.openai(api_key=KEYS[1]) as beta:
        await alpha.chat.completions.create(model="m1", messages=hi)
        stream = await alpha.chat.completions.create(
            model="m1", messages=hi, stream=True, stream_options={"include_usage": True}
        )
        async for _ in stream:
            pass
        await beta.chat.completions.create(model="m1", messages=hi)
        with pytest.raises(openai.RateLimitError):
            await beta.chat.completions.create(model="m1", messages=hi)
        with pytest.raises(openai.APIStatusError) as too_large:
            await alpha.chat.completions.create(
                model="m1", messages=[{"role": "user", "content": "x" * 5000}]
            )
        with pytest.raises(openai.NotFoundError):
            await alpha.chat.completions.create(model="gpt-made-up-name", messages=hi)
    async with gw.openai(api_key="sk-wrong") as stranger:
        with pytest.raises(openai.AuthenticationError):
            await stranger.chat.completions.create(model="m1", messages=hi)
    assert too_large.value.status_code == 413 and too_large.value.code == "request_too_large"

    text, samples = await _scrape(http, gw)
    req = "switchgear_requests_total"
    assert _value(samples, req, model="m1", backend=up.url, status="200") == 3
    assert _value(samples, req, model="none", status="401") == 1
    assert _value(samples, req, model="none", status="413") == 1
    assert _value(samples, req, model="none", status="429") == 1
    assert _value(samples, req, model="other", status="404") == 1

    # tokens by model and API key id: the JSON answer and the streamed usage chunk
    assert _value(samples, "switchgear_prompt_tokens_total", model="m1", key="key-0") == 6
    assert _value(samples, "switchgear_completion_tokens_total", model="m1", key="key-0") == 8
    assert _value(samples, "switchgear_prompt_tokens_total", model="m1", key="key-1") == 3
    assert _value(samples, "switchgear_completion_tokens_total", model="m1", key="key-1") == 4

    # the stream's TTFT and its time per output token (4 chunks: 3 gaps)
    ttft = "switchgear_time_to_first_token_seconds_count"
    assert _value(samples, ttft, model="m1", backend=up.url) == 1
    tpot = "switchgear_time_per_output_token_seconds"
    assert _value(samples, tpot + "_count", model="m1", backend=up.url) == 1
    assert _value(samples, tpot + "_sum", model="m1") >= 0

    # bounded labels: no series for the unknown name, and never a key itself
    assert "gpt-made-up-name" not in text
    assert all(key not in text for key in KEYS) and "sk-wrong" not in text


async def test_unknown_model_names_share_one_series(upstream, gateway, http):
    up = await upstream("m1", name="a")
    gw = await gateway({"backends": backends(up)})
    hi = [{"role": "user", "content": "hi"}]
    async with gw.openai() as client:
        for i in range(5):
            with pytest.raises(openai.NotFoundError):
                await client.chat.completions.create(model=f"nonexistent-{i}", messages=hi)
    text, samples = await _scrape(http, gw)
    rows = [labels for labels, _ in samples["switchgear_requests_total"]]
    assert {r["model"] for r in rows} == {"other"}
    assert _value(samples, "switchgear_requests_total", model="other", status="404") == 5
    assert "nonexistent" not in text
    # no API keys configured: tokens are labelled key="none", never by client address
    async with gw.openai() as client:
        await client.chat.completions.create(model="m1", messages=hi)
    _, samples = await _scrape(http, gw)
    assert _value(samples, "switchgear_prompt_tokens_total", model="m1", key="none") == 3


async def test_responses_api_tokens_are_counted(upstream, gateway, http):
    """Translated (a chat backend) and native (a Responses backend), streamed and not."""
    chat = await upstream("m1", name="c", chunks=4)
    native = await upstream("m2", name="n", responses=True)
    gw = await gateway(
        {"backends": [*backends(chat), *backends(native, meta={"supports_responses": "true"})]}
    )
    async with gw.openai() as client:
        for model in ("m1", "m2"):
            await client.responses.create(model=model, input="hi")
            async with client.responses.stream(model=model, input="hi") as stream:
                await stream.get_final_response()
    _, samples = await _scrape(http, gw)
    prompt, completion = "switchgear_prompt_tokens_total", "switchgear_completion_tokens_total"
    # translated: the chat answer's usage (3 + 4); its stream has no usage chunk, so the
    # prompt estimate and the 4 content chunks are counted
    assert _value(samples, completion, model="m1", key="none") == 8
    assert _value(samples, prompt, model="m1", key="none") >= 3
    # native: input_tokens 5, output_tokens 4, from the response and from response.completed
    assert _value(samples, prompt, model="m2", key="none") == 10
    assert _value(samples, completion, model="m2", key="none") == 8
    assert _value(samples, "switchgear_requests_total", model="m2", status="200") == 2
