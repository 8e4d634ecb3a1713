"""Fuzz the HTTP API from the OpenAPI document the gateway serves at /openapi.json.

Requests are generated from each operation's schema (valid bodies, bodies with wrong types
and unknown fields, hostile strings in paths), sent over real HTTP to a gateway in front of a
fake upstream. Every answer must be non-5xx (502/503/504 from upstream excepted) and every
error OpenAI-shaped. The gateway runs on its own loop in a thread so Hypothesis drives a
plain synchronous test; the whole module is bounded by ``max_examples``.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from switchgear.proxy.app import create_app
from switchgear.proxy.server import start
from switchgear.settings import parse_settings
from tests.fakes import FakeUpstream
from tests.proxy.conftest import FAST, gateway_pm

API_KEY, ADMIN_KEY = "sk-fuzz", "admin-fuzz"
UPSTREAM_STATUSES = {502, 503, 504}
HOSTILE = [
    "m1",
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "/etc/shadow",
    "m1\x00",
    "m1\r\nx-injected: 1",
    "\u202e\ufeff",
    "你好",
    "%n%s%x",
    "' OR 1=1 --",
    "a" * 5000,
]


class Served:
    """A gateway and one fake upstream on a background event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = self.call(self._start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    async def _start(self) -> int:
        self.up = await FakeUpstream("m1", chunks=2).start()
        config = {
            **FAST,
            "backends": [{"model": "m1", "url": self.up.url}],
            "auth": {"api_keys": [API_KEY], "admin_key": ADMIN_KEY},
            "limits": {"max_body_bytes": 65536, "max_tokens_cap": 64},
        }
        settings_ = parse_settings(config)
        app = create_app(settings_, plugin_manager=gateway_pm())
        self.runner = await start(app, settings_, host="127.0.0.1", port=0)
        return int(self.runner.addresses[0][1])

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await self.up.close()

    def close(self) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    s = Served()
    yield s
    s.close()


@pytest.fixture(scope="module")
def spec(served: Served) -> dict[str, Any]:
    status, headers, raw = served.send("GET", "/openapi.json")
    assert status == 200 and headers["content-type"].startswith("application/json")
    doc = json.loads(raw)
    assert doc["openapi"].startswith("3.1")
    return doc


def assert_sane(status: int, headers: dict[str, str], raw: bytes) -> None:
    assert status < 500 or status in UPSTREAM_STATUSES, (status, raw[:300])
    assert "x-injected" not in headers
    if status >= 400:
        body = json.loads(raw)
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
        assert isinstance(body["error"]["message"], str)
        assert "Traceback" not in body["error"]["message"]


# --- strategies from JSON Schema (the subset /openapi.json uses) ---------------------------

JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(HOSTILE)
)
ANY_JSON = st.recursive(
    JSON_LEAF,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3)
    ),
    max_leaves=8,
)


def from_schema(schema: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Mostly valid values of ``schema``; about one in four is any JSON at all (wrong types)."""
    valid = _valid(schema, components)
    return valid if "$ref" in schema else st.one_of(valid, valid, valid, ANY_JSON)


def _valid(schema: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        return _valid(components[schema["$ref"].rsplit("/", 1)[1]], components)
    if "anyOf" in schema:
        return st.one_of([_valid(s, components) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"]) | st.sampled_from(HOSTILE)
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([_valid({**schema, "type": k}, components) for k in kind])
    if kind in _CONTAINERS:
        return _CONTAINERS[kind](schema, components)
    scalar = _SCALARS.get(kind)
    return scalar() if scalar is not None else ANY_JSON


def _valid_object(schema: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[Any]:
    props = schema.get("properties", {})
    required = set(schema.get("required", ()))
    fixed = {k: from_schema(v, components) for k, v in props.items() if k in required}
    if "model" in fixed:  # a known model, mostly: the request must get past routing
        fixed["model"] = st.one_of(st.just("m1"), st.just("m1"), fixed["model"])
    optional = {k: from_schema(v, components) for k, v in props.items() if k not in required}
    base = st.fixed_dictionaries(fixed, optional=optional)
    extra = st.dictionaries(st.text(min_size=1, max_size=10), ANY_JSON, max_size=2)
    return st.builds(lambda a, b: {**b, **a}, base, extra)


def _valid_array(schema: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[Any]:
    items = _valid(schema.get("items", {}), components)
    return st.lists(items, min_size=schema.get("minItems", 0), max_size=4)


_CONTAINERS: dict[str, Callable[[dict[str, Any], dict[str, Any]], st.SearchStrategy[Any]]] = {
    "object": _valid_object,
    "array": _valid_array,
}
_SCALARS: dict[str, Callable[[], st.SearchStrategy[Any]]] = {
    "string": lambda: st.sampled_from(HOSTILE) | st.text(max_size=30),
    "integer": lambda: (
        st.integers(min_value=-(2**64), max_value=2**64) | st.sampled_from([0, 1, 2**63])
    ),
    "number": lambda: st.floats(allow_nan=False, allow_infinity=False) | st.integers(-5, 5),
    "boolean": st.booleans,
    "null": st.none,
}


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op) for path, item in doc["paths"].items() for method, op in item.items()
    ]


AUTH = st.sampled_from(
    [
        {},
        {"Authorization": f"Bearer {API_KEY}"},
        {"Authorization": f"Bearer {ADMIN_KEY}"},
        {"Authorization": "Bearer wrong"},
    ]
)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)


def test_openapi_describes_every_proxied_route(spec):
    paths = spec["paths"]
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"):
        assert path in paths
    assert paths["/v1/chat/completions"]["post"]["requestBody"]["required"] is True


#: A smallest valid body per proxied path: the draw alone sometimes reaches the upstream
#: with none (the schemas accept far more shapes than the gateway serves).
VALID: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "m1", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/completions": {"model": "m1", "prompt": "hi"},
    "/v1/embeddings": {"model": "m1", "input": "hi"},
    "/v1/responses": {"model": "m1", "input": "hi"},
}


@pytest.mark.parametrize(
    "path",
    [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/admin/backends",
    ],
)
def test_fuzz_request_bodies(served, spec, path):
    op = spec["paths"][path]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    comps = spec["components"]["schemas"]

    seen: set[int] = set()

    @settings(FUZZ, max_examples=400)
    @given(body=from_schema(schema, comps) | ANY_JSON, auth=AUTH)
    def run(body: Any, auth: dict[str, str]) -> None:
        raw = json.dumps(body).encode()
        status, headers, out = served.send(
            "POST", path, raw, {"Content-Type": "application/json", **auth}
        )
        assert_sane(status, headers, out)
        seen.add(status)

    if path in VALID:  # always one request that must go all the way, whatever the draw
        run = example(body=VALID[path], auth={"Authorization": f"Bearer {API_KEY}"})(run)
    run()
    assert 400 in seen and 401 in seen  # the fuzz reached validation, not only auth
    if path.startswith("/v1/"):
        assert 200 in seen  # and some requests went all the way to the upstream


def test_fuzz_raw_bytes(served):
    """Bodies that are not JSON at all: invalid UTF-8, truncated, NaN, binary."""
    valid = b'{"model": "m1", "messages": [{"role": "user", "content": "hi"}]}'

    @FUZZ
    @given(
        raw=st.binary(max_size=200)
        | st.builds(lambda n: valid[:n], st.integers(0, len(valid)))
        | st.sampled_from(
            [
                b'{"model": "m1", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
                valid.replace(b"hi", b"\xff\xfe"),
                valid.replace(b'"hi"', b"NaN"),
                valid[:-1] + b', "temperature": NaN}',
                valid[:-1] + b', "max_tokens": -Infinity}',
                valid[:-1] + b', "max_tokens": 1e999}',
                valid[:-1] + b', "max_tokens": 100000000000000000000000000000}',
            ]
        ),
        ctype=st.sampled_from(
            ["application/json", "text/plain", "application/x-www-form-urlencoded"]
        ),
    )
    def run(raw: bytes, ctype: str) -> None:
        headers = {"Content-Type": ctype, "Authorization": f"Bearer {API_KEY}"}
        status, out_headers, out = served.send("POST", "/v1/chat/completions", raw, headers)
        assert_sane(status, out_headers, out)

    run()


def test_fuzz_path_parameters(served, spec):
    templated = [(p, m) for p, m, _ in _operations(spec) if "{" in p]

    @FUZZ
    @given(
        route=st.sampled_from(templated),
        value=st.sampled_from(HOSTILE) | st.text(min_size=1, max_size=40),
        auth=AUTH,
    )
    def run(route: tuple[str, str], value: str, auth: dict[str, str]) -> None:
        path, method = route
        name = path[path.index("{") + 1 : path.index("}")]
        url = path.replace("{" + name + "}", quote(value, safe=""))
        status, headers, out = served.send(method.upper(), url, b"", auth)
        assert_sane(status, headers, out)

    run()
