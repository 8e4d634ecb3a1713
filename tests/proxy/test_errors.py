"""Every error a client can cause or meet: OpenAI-shaped, right status, right SDK exception."""

from __future__ import annotations

import openai
import pytest

from tests.fakes import Fault
from tests.proxy.conftest import backends

MSG = [{"role": "user", "content": "hi"}]


def _shape(body: dict) -> dict:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


async def test_invalid_json_is_400(upstream, gateway, http):
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up)})
    async with http.post(
        gw.url + "/v1/chat/completions", data=b"{nope", headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == 400
        err = _shape(await r.json())
    assert err["type"] == "invalid_request_error" and "JSON" in err["message"]
    assert "Traceback" not in err["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MSG}, "model"),
        ({"model": "m1"}, "messages"),
        ({"model": "m1", "messages": []}, "messages"),
        ({"model": "m1", "messages": MSG, "stream": "yes"}, "stream"),
        ({"model": "m1", "messages": MSG, "max_tokens": -3}, "max_tokens"),
    ],
)
async def test_invalid_fields_are_400_naming_the_field(upstream, gateway, http, body, param):
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up)})
    async with http.post(gw.url + "/v1/chat/completions", json=body) as r:
        assert r.status == 400
        assert _shape(await r.json())["param"] == param
    assert up.requests == []


async def test_sdk_bad_request_error(upstream, gateway):
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up)})
    async with gw.openai() as client:
        with pytest.raises(openai.BadRequestError) as exc:
            await client.completions.create(model="m1", prompt=None)  # type: ignore[arg-type]
    assert exc.value.param == "prompt"


async def test_auth_missing_and_invalid_key_are_401(upstream, gateway, http):
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up), "auth": {"api_keys": ["sk-good", "sk-other"]}})
    async with gw.openai(api_key="sk-bad") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model="m1", messages=MSG)
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()
    async with http.post(
        gw.url + "/v1/chat/completions", json={"model": "m1", "messages": MSG}
    ) as r:
        assert r.status == 401 and _shape(await r.json())["type"] == "authentication_error"
    async with gw.openai(api_key="sk-other") as client:
        out = await client.chat.completions.create(model="m1", messages=MSG)
    assert out.choices[0].message.content
    async with http.get(gw.url + "/healthz") as r:
        assert r.status == 200  # health and metrics stay open


async def test_api_keys_from_env_and_file(upstream, gateway, tmp_path, monkeypatch):
    up = await upstream("m1")
    keyfile = tmp_path / "keys"
    keyfile.write_text("# comment\nsk-file\n")
    monkeypatch.setenv("SWITCHGEAR_API_KEYS", "sk-env")
    gw = await gateway({"backends": backends(up), "auth": {"api_keys_file": str(keyfile)}})
    for key in ("sk-env", "sk-file"):
        async with gw.openai(api_key=key) as client:
            await client.chat.completions.create(model="m1", messages=MSG)


async def test_unknown_model_is_404_listing_available(upstream, gateway):
    a, b = await upstream("m1"), await upstream("m2")
    gw = await gateway({"backends": backends(a, b)})
    async with gw.openai() as client:
        with pytest.raises(openai.NotFoundError) as exc:
            await client.chat.completions.create(model="gpt-9", messages=MSG)
    assert exc.value.code == "model_not_found"
    assert "m1, m2" in exc.value.message


async def test_body_over_limit_is_413(upstream, gateway, http):
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up), "limits": {"max_body_bytes": 1000}})
    big = {"model": "m1", "messages": [{"role": "user", "content": "x" * 2000}]}
    async with gw.openai() as client:
        with pytest.raises(openai.APIStatusError) as exc:
            await client.chat.completions.create(**big)
    assert exc.value.status_code == 413
    assert exc.value.code == "request_too_large"

    async def chunks():
        yield b'{"model": "m1", "messages": [{"role": "user", "content": "'
        yield b"y" * 2000
        yield b'"}]}'

    async with http.post(gw.url + "/v1/chat/completions", data=chunks()) as r:  # chunked, no length
        assert r.status == 413
        _shape(await r.json())


async def test_no_healthy_backend_is_503(upstream, gateway):
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up)})
    from switchgear.proxy.keys import BACKEND_STATE

    gw.app[BACKEND_STATE].eject(up.url, "test")
    async with gw.openai() as client:
        with pytest.raises(openai.InternalServerError) as exc:
            await client.chat.completions.create(model="m1", messages=MSG)
    assert exc.value.status_code == 503 and exc.value.code == "no_healthy_backend"


async def test_model_configured_without_backends_is_503(gateway):
    gw = await gateway({"models": {"lonely": {"context_length": 100}}})
    async with gw.openai() as client:
        with pytest.raises(openai.InternalServerError) as exc:
            await client.chat.completions.create(model="lonely", messages=MSG)
    assert exc.value.status_code == 503


async def test_upstream_timeout_is_504(upstream, gateway):
    up = await upstream("m1")
    up.always = Fault(silence=True)
    gw = await gateway(
        {"backends": backends(up), "timeouts": {"ttft": 0.2}, "retries": {"attempts": 2}}
    )
    async with gw.openai() as client:
        with pytest.raises(openai.InternalServerError) as exc:
            await client.chat.completions.create(model="m1", messages=MSG)
    assert exc.value.status_code == 504 and exc.value.code == "upstream_timeout"
    assert len(up.requests) == 1  # a backend that missed its first byte is not asked again


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (422, openai.UnprocessableEntityError),
        (500, openai.InternalServerError),
    ],
)
async def test_upstream_errors_pass_through_with_status(upstream, gateway, status, cls):
    up = await upstream("m1")
    err = {"message": f"backend says {status}", "type": "some_type", "param": "p", "code": "c"}
    up.always = Fault(status=status, error=err)
    gw = await gateway({"backends": backends(up)})
    async with gw.openai() as client:
        with pytest.raises(cls) as exc:
            await client.chat.completions.create(model="m1", messages=MSG)
    assert exc.value.status_code == status
    assert exc.value.body == err
    assert len(up.requests) == (3 if status == 500 else 1)


async def test_admin_routes_need_the_admin_key(upstream, gateway, http):
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up), "auth": {"admin_key": "adm"}})
    async with http.get(gw.url + "/admin/backends") as r:
        assert r.status == 401 and _shape(await r.json())
    async with http.get(gw.url + "/admin/backends", headers={"Authorization": "Bearer adm"}) as r:
        rows = (await r.json())["data"]
    assert (
        rows[0]["id"] == up.url and rows[0]["breaker"] == "closed" and rows[0]["outstanding"] == 0
    )
    async with http.get(gw.url + "/admin/plugins", headers={"Authorization": "Bearer adm"}) as r:
        names = {p["name"] for p in (await r.json())["data"]}
    assert "switchgear.default_plugins.balancing" in names


async def test_admin_without_configured_key_is_403(gateway, http):
    gw = await gateway({})
    async with http.get(gw.url + "/admin/backends", headers={"Authorization": "Bearer x"}) as r:
        assert r.status == 403 and _shape(await r.json())["type"] == "permission_error"


async def test_unknown_route_and_method_are_openai_shaped(gateway, http):
    gw = await gateway({})
    async with http.get(gw.url + "/v1/nope") as r:
        assert r.status == 404 and _shape(await r.json())
    async with http.get(gw.url + "/v1/chat/completions") as r:
        assert r.status == 405 and _shape(await r.json())


async def test_plugin_crash_never_leaks_a_traceback(upstream, gateway):
    from switchgear import hookimpl

    class Broken:
        @hookimpl
        def rewrite_request(self, ctx, body, backend):
            raise RuntimeError("secret internals")

    up = await upstream("m1")
    gw = await gateway({"backends": backends(up)}, plugins=(Broken(),))
    async with gw.openai() as client:
        out = await client.chat.completions.create(model="m1", messages=MSG)
    assert out.choices[0].message.content  # the failing plugin is skipped


@pytest.mark.parametrize(("raised", "status"), [("secret", 500), ("api", 429), ("aiohttp", 413)])
async def test_gateway_and_worker_render_errors_alike(aiohttp_client, raised, status):
    """Both programs' error middlewares answer every exception through
    ``switchgear.errors.error_response``: the same status and body, never a traceback."""
    from aiohttp import web

    from switchgear.errors import RateLimited
    from switchgear.proxy.middlewares import errors as gateway_errors
    from switchgear.worker.app import errors_middleware as worker_errors

    async def handler(request: web.Request) -> web.Response:
        if raised == "secret":
            raise RuntimeError("Traceback: password=hunter2 in /etc/secret")
        if raised == "api":
            raise RateLimited("slow down", retry_after=2.5)
        raise web.HTTPRequestEntityTooLarge(max_size=10, actual_size=20)

    seen = []
    for middleware in (gateway_errors, worker_errors):
        app = web.Application(middlewares=[middleware])
        app.router.add_post("/x", handler)
        client = await aiohttp_client(app)
        answers = {}
        for method, path in (("POST", "/x"), ("GET", "/nowhere"), ("GET", "/x")):
            r = await client.request(method, path)
            err = _shape(await r.json())
            assert "hunter2" not in err["message"] and "Traceback" not in err["message"]
            answers[method, path] = (r.status, err["type"], r.headers.get("Retry-After"))
            if r.status == 405:
                assert r.headers["Allow"] == "POST"
            if r.status == 404:
                assert err["message"] == "no route for GET /nowhere"
        seen.append(answers)
    gateway, worker = seen
    assert gateway == worker
    assert gateway["POST", "/x"][0] == status
    assert gateway["GET", "/nowhere"][0] == 404 and gateway["GET", "/x"][0] == 405
    assert gateway["POST", "/x"][2] == ("3" if raised == "api" else None)
