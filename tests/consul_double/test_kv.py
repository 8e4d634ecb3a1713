"""KV store (contract §9): 404 with headers, base64, CAS, recurse, keys, raw, blocking."""

from __future__ import annotations

import asyncio
import base64


async def test_missing_key_is_404_with_index_headers(http):
    r = await http.get("/v1/kv/nothing")
    assert r.status == 404 and await r.read() == b""
    assert int(r.headers["X-Consul-Index"]) >= 1 and r.headers["X-Consul-Knownleader"] == "true"


async def test_put_get_base64_and_empty_value(http):
    assert await (await http.put("/v1/kv/a/b", data=b"\x00bin")).json() is True
    (e,) = await (await http.get("/v1/kv/a/b")).json()
    assert base64.b64decode(e["Value"]) == b"\x00bin" and e["CreateIndex"] == e["ModifyIndex"]
    assert e["Flags"] == 0 and e["Session"] == ""
    await http.put("/v1/kv/a/empty", data=b"")
    (e,) = await (await http.get("/v1/kv/a/empty")).json()
    assert e["Value"] is None
    r = await http.get("/v1/kv/a/b?raw")
    assert await r.read() == b"\x00bin"


async def test_cas(http):
    assert await (await http.put("/v1/kv/k?cas=0", data=b"1")).json() is True
    assert await (await http.put("/v1/kv/k?cas=0", data=b"2")).json() is False
    (e,) = await (await http.get("/v1/kv/k")).json()
    assert await (await http.put(f"/v1/kv/k?cas={e['ModifyIndex'] + 1}", data=b"3")).json() is False
    assert await (await http.put(f"/v1/kv/k?cas={e['ModifyIndex']}", data=b"3")).json() is True
    assert await (await http.delete("/v1/kv/k?cas=0")).json() is False
    assert await (await http.delete("/v1/kv/k")).json() is True
    assert await (await http.delete("/v1/kv/k")).json() is True  # deleting a missing key is true


async def test_recurse_keys_and_separator(http):
    for k in ("p/a", "p/b/c", "p/b/d", "q"):
        await http.put(f"/v1/kv/{k}", data=b"v")
    assert [e["Key"] for e in await (await http.get("/v1/kv/p/?recurse")).json()] == [
        "p/a",
        "p/b/c",
        "p/b/d",
    ]
    assert await (await http.get("/v1/kv/p/?keys")).json() == ["p/a", "p/b/c", "p/b/d"]
    assert await (await http.get("/v1/kv/p/?keys&separator=/")).json() == ["p/a", "p/b/"]
    assert await (await http.delete("/v1/kv/p/?recurse")).json() is True
    assert (await http.get("/v1/kv/p/?recurse")).status == 404


async def test_value_too_large_is_413(http):
    r = await http.put("/v1/kv/big", data=b"x" * (512 * 1024 + 1))
    assert r.status == 413


async def test_blocking_on_a_missing_key_waits_for_it(cluster, http):
    r = await http.get("/v1/kv/later")
    pending = asyncio.ensure_future(
        http.get(f"/v1/kv/later?index={r.headers['X-Consul-Index']}&wait=1m")
    )
    await asyncio.sleep(0)
    cluster.datacenters["dc1"].kv_put("later", b"here")
    r = await asyncio.wait_for(pending, 5)
    assert r.status == 200 and base64.b64decode((await r.json())[0]["Value"]) == b"here"


async def test_each_datacenter_has_its_own_store(http):
    await http.put("/v1/kv/shared", data=b"dc1")
    assert (await http.get("/v1/kv/shared?dc=dc2")).status == 404
