"""Finding: a body nested 254-1023 deep in a field nobody reads parsed fine and then failed
as a 500 when the gateway re-encoded it for the backend. It is a 400 at the edge now."""

from __future__ import annotations

import pytest

from switchgear.bodies import MAX_DEPTH
from tests.hardening.conftest import backends

HEAD = b'{"model": "m1", "messages": [{"role": "user", "content": "hi"}], "x_vendor": '


def nested(levels: int) -> bytes:
    """A chat body whose unknown field nests arrays down to depth ``levels``."""
    arrays = levels - 1
    return HEAD + b"[" * arrays + b"]" * arrays + b"}"


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 254, 255, 600, 1022, 1023, 1024])
async def test_deep_nesting_in_an_unknown_field_is_400(upstream, gateway, http, levels):
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up)})
    async with http.post(gw.url + "/v1/chat/completions", data=nested(levels)) as r:
        assert r.status == 400, await r.text()
        body = await r.json()
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and "nested too deeply" in err["message"]
    assert "Traceback" not in err["message"]
    assert up.requests == []


async def test_nesting_at_the_limit_is_forwarded(upstream, gateway, http):
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up)})
    async with http.post(gw.url + "/v1/chat/completions", data=nested(MAX_DEPTH)) as r:
        assert r.status == 200, await r.text()
    depth, value = 2, up.requests[-1].body["x_vendor"]  # the object is 1, its field 2
    while value:
        depth, value = depth + 1, value[0]
    assert depth == MAX_DEPTH


async def test_admin_bodies_use_the_same_reader(upstream, gateway, http):
    up = await upstream("m1")
    gw = await gateway({"backends": backends(up, id="b1"), "auth": {"admin_key": "adm"}})
    url, hdr = gw.url + "/admin/backends/b1/eject", {"Authorization": "Bearer adm"}
    for raw in (b'{"reason": ' + b"[" * 300 + b"]" * 300 + b"}", b"{nope", b"[1]"):
        async with http.post(url, data=raw, headers=hdr) as r:
            assert r.status == 400, await r.text()
            assert (await r.json())["error"]["type"] == "invalid_request_error"
    async with http.post(url, json={"reason": "drill"}, headers=hdr) as r:
        assert r.status == 200
        assert (await r.json())["ejected"] == "drill"
