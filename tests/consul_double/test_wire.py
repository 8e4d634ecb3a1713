"""Conventions common to every endpoint (contract §2): request keys, durations, flags,
headers and the plain-text error model."""

from __future__ import annotations

import pytest

from tests.consul_double.util import DurationError, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("0", 0.0),
        ("1.5s", 1.5),
        (10, 1e-8),
    ],
)
def test_go_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10", "s", "1x", "", "1m 2s"])
def test_bad_durations(text):
    with pytest.raises(DurationError):
        parse_duration(text)


async def test_request_keys_are_case_and_underscore_insensitive_but_meta_is_data(http, agent):
    body = {
        "NAME": "llm",
        "id": "a",
        "Port": 80,
        "enable_tag_override": True,
        "meta": {"Model_ID": "x", "lower": "y"},
        "checks": [{"ttl": "10s", "deregister_critical_service_after": "2m", "STATUS": "passing"}],
    }
    r = await http.put("/v1/agent/service/register", json=body)
    assert r.status == 200 and await r.read() == b""
    svc = agent.services["a"]
    assert (
        svc.name == "llm"
        and svc.enable_tag_override
        and svc.meta == {"Model_ID": "x", "lower": "y"}
    )
    chk = agent.checks["service:a"]
    assert chk.status == "passing" and chk.deregister_after == 120.0


async def test_undecodable_body_and_bad_duration_are_400(http):
    r = await http.put("/v1/agent/service/register", data=b"{nope")
    assert r.status == 400 and (await r.text()).startswith("Request decode failed")
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    r = await http.put("/v1/agent/service/register", json={"name": "x", "check": {"ttl": "ten"}})
    assert r.status == 400 and "Request decode failed" in await r.text()


async def test_missing_name_and_invalid_checks(http):
    r = await http.put("/v1/agent/service/register", json={"id": "x"})
    assert (r.status, await r.text()) == (400, "Missing service name")
    for check in (
        {"ttl": "1s", "interval": "1s"},
        {"http": "http://x/"},
        {"notes": "no kind"},
        {"ttl": "1s", "status": "sick"},
    ):
        r = await http.put("/v1/agent/service/register", json={"name": "x", "check": check})
        assert r.status == 400 and (await r.text()).startswith("Invalid check:"), check


async def test_meta_rules(http):
    for meta in ({"consul-x": "1"}, {"bad key": "1"}, {"k": 1}, {"k": "v" * 513}):
        r = await http.put("/v1/agent/service/register", json={"name": "x", "meta": meta})
        assert r.status == 400, meta


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("passing", 200),
        ("passing=", 200),
        ("passing=T", 200),
        ("passing=0", 200),
        ("passing=yes", 400),
    ],
)
async def test_passing_is_a_boolean(http, query, status):
    r = await http.get(f"/v1/health/service/llm?{query}")
    assert r.status == status
    if status == 400:
        assert await r.text() == "Invalid value for ?passing"


async def test_stale_with_consistent_conflicts(http):
    r = await http.get("/v1/health/service/llm?stale&consistent")
    assert r.status == 400
    r = await http.get("/v1/health/service/llm?stale=false")
    assert (
        r.headers["X-Consul-Effective-Consistency"] == "stale"
    )  # presence flag: the value is ignored


async def test_canonical_header_spelling(http):
    r = await http.get("/v1/health/service/llm")
    names = set(r.raw_headers[i][0].decode() for i in range(len(r.raw_headers)))
    assert {
        "X-Consul-Index",
        "X-Consul-Knownleader",
        "X-Consul-Lastcontact",
        "X-Consul-Default-Acl-Policy",
        "X-Consul-Effective-Consistency",
    } <= names
    assert "X-Consul-KnownLeader" not in names
    assert await r.json() == []  # a missing service is 200 [], never 404


async def test_wrong_method_is_405_with_allow(http):
    r = await http.post("/v1/agent/service/register", json={})
    assert r.status == 405 and await r.text() == "method POST not allowed"
    assert "PUT" in r.headers["Allow"]
    r = await http.options("/v1/agent/service/register")
    assert r.status == 200 and "PUT" in r.headers["Allow"]


async def test_line_feed_in_a_name_is_rejected(http):
    r = await http.get("/v1/health/service/a%0ab")
    assert r.status == 400


async def test_injected_failures_and_rpc_prefix(cluster, http):
    cluster.inject_errors(2, 503, "rate limit exceeded")
    assert [(await http.get("/v1/catalog/services")).status for _ in range(3)] == [503, 503, 200]
    cluster.rpc_error_prefix = True
    r = await http.get("/v1/health/service/llm?dc=nowhere")
    assert r.status == 500 and "No path to datacenter" in await r.text()
    assert (await r.text()).startswith("rpc error")
