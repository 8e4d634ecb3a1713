"""Sessions (``/v1/session/*``) and the KV locks they hold (``?acquire=`` / ``?release=``)."""

from __future__ import annotations

import asyncio
import base64

import consul.aio
import pytest

from tests.consul_double import ConsulCluster
from tests.consul_double.conftest import poll


async def create(http, body: dict | None = None) -> str:
    r = await http.put("/v1/session/create", json=body or {})
    assert r.status == 200, await r.text()
    sid = (await r.json())["ID"]
    assert isinstance(sid, str) and len(sid) == 36
    return sid


async def info(http, sid: str) -> list[dict]:
    r = await http.get(f"/v1/session/info/{sid}")
    assert r.status == 200 and int(r.headers["X-Consul-Index"]) >= 1
    return await r.json()


async def entry(http, key: str) -> dict:
    (e,) = await (await http.get(f"/v1/kv/{key}")).json()
    return e


async def test_create_defaults_and_info_shape(http):
    sid = await create(http)
    (s,) = await info(http, sid)
    assert s["ID"] == sid and s["Node"] == "node-a" and s["Name"] == ""
    assert s["LockDelay"] == 15_000_000_000 and s["Behavior"] == "release" and s["TTL"] == ""
    assert s["NodeChecks"] == ["serfHealth"] and s["ServiceChecks"] is None
    assert s["CreateIndex"] == s["ModifyIndex"] >= 1


async def test_fields_are_case_insensitive_and_lock_delay_numbers_are_seconds(http):
    sid = await create(http, {"name": "x", "lockdelay": 2, "behavior": "delete", "ttl": "10s"})
    (s,) = await info(http, sid)
    assert (s["Name"], s["LockDelay"], s["Behavior"], s["TTL"]) == (
        "x",
        2_000_000_000,
        "delete",
        "10s",
    )
    (s,) = await info(http, await create(http, {"LockDelay": "1ms", "Checks": []}))
    assert s["LockDelay"] == 1_000_000 and s["NodeChecks"] is None


@pytest.mark.parametrize("ttl", ["9s", "86401s", "25h"])
async def test_ttl_out_of_range_is_400(http, ttl):
    r = await http.put("/v1/session/create", json={"TTL": ttl})
    assert r.status == 400 and "TTL must be between [10s-24h0m0s]" in await r.text()


async def test_bad_behavior_unknown_node_and_critical_check_are_refused(cluster, http):
    r = await http.put("/v1/session/create", json={"Behavior": "keep"})
    assert r.status == 500 and "Invalid Behavior setting 'keep'" in await r.text()
    r = await http.put("/v1/session/create", json={"Node": "nowhere"})
    assert r.status == 500 and "Missing node registration" in await r.text()
    cluster.fail_node("dc1", "node-a")
    r = await http.put("/v1/session/create", json={})
    assert r.status == 500 and "Check 'serfHealth' is in critical state" in await r.text()
    assert (await http.put("/v1/session/create", json={"NodeChecks": []})).status == 200


async def test_renew_returns_an_array_and_unknown_is_404(http):
    sid = await create(http, {"TTL": "10s"})
    before = (await http.get(f"/v1/session/info/{sid}")).headers["X-Consul-Index"]
    r = await http.put(f"/v1/session/renew/{sid}")
    assert r.status == 200
    (s,) = await r.json()
    assert s["ID"] == sid and s["TTL"] == "10s"
    after = (await http.get(f"/v1/session/info/{sid}")).headers["X-Consul-Index"]
    assert after == before  # a renewal is no write
    unknown = "00000000-0000-0000-0000-00000000abcd"
    r = await http.put(f"/v1/session/renew/{unknown}")
    assert r.status == 404 and f"Session id '{unknown}' not found" in await r.text()


async def test_destroy_is_true_idempotent_and_info_of_unknown_is_empty(http):
    sid = await create(http)
    assert await (await http.put(f"/v1/session/destroy/{sid}")).json() is True
    assert await (await http.put(f"/v1/session/destroy/{sid}")).json() is True
    assert await info(http, sid) == []


async def test_wrong_methods_are_405(http):
    assert (await http.get("/v1/session/create")).status == 405
    assert (await http.get("/v1/session/renew/x")).status == 405
    assert (await http.put("/v1/session/info/x")).status == 405


async def test_acquire_and_release(http):
    a, b = await create(http), await create(http)
    assert await (await http.put(f"/v1/kv/lock?acquire={a}", data=b"A")).json() is True
    e = await entry(http, "lock")
    assert e["Session"] == a and e["LockIndex"] == 1 and base64.b64decode(e["Value"]) == b"A"
    assert await (await http.put(f"/v1/kv/lock?acquire={b}", data=b"B")).json() is False
    assert await (await http.put(f"/v1/kv/lock?release={b}", data=b"B")).json() is False
    # The holder may acquire again: the value changes, the lock index does not.
    assert await (await http.put(f"/v1/kv/lock?acquire={a}", data=b"A2")).json() is True
    assert (await entry(http, "lock"))["LockIndex"] == 1
    # A plain write keeps the lock holder.
    assert await (await http.put("/v1/kv/lock", data=b"plain")).json() is True
    assert (await entry(http, "lock"))["Session"] == a
    assert await (await http.put(f"/v1/kv/lock?release={a}", data=b"free")).json() is True
    e = await entry(http, "lock")
    assert e["Session"] == "" and base64.b64decode(e["Value"]) == b"free"
    assert await (await http.put(f"/v1/kv/lock?acquire={b}", data=b"B")).json() is True
    assert (await entry(http, "lock"))["LockIndex"] == 2


async def test_acquire_with_an_unknown_session_is_500(http):
    r = await http.put("/v1/kv/lock?acquire=00000000-0000-0000-0000-000000000000", data=b"")
    assert r.status == 500 and "invalid session" in await r.text()


async def test_destroy_releases_the_lock_and_starts_the_lock_delay(cluster, http):
    a = await create(http, {"LockDelay": "10s"})
    b = await create(http)
    await http.put(f"/v1/kv/lock?acquire={a}", data=b"A")
    held = (await entry(http, "lock"))["ModifyIndex"]
    await http.put(f"/v1/session/destroy/{a}")
    e = await entry(http, "lock")
    assert e["Session"] == "" and e["ModifyIndex"] > held and e["LockIndex"] == 1
    assert await (await http.put(f"/v1/kv/lock?acquire={b}", data=b"B")).json() is False
    cluster.clock.advance(10.5)
    assert await (await http.put(f"/v1/kv/lock?acquire={b}", data=b"B")).json() is True


async def test_delete_behavior_deletes_held_keys(http):
    a = await create(http, {"Behavior": "delete", "LockDelay": "1ms"})
    await http.put(f"/v1/kv/gone?acquire={a}", data=b"A")
    await http.put(f"/v1/session/destroy/{a}")
    assert (await http.get("/v1/kv/gone")).status == 404


async def test_ttl_expiry_is_up_to_twice_the_ttl_and_wakes_a_blocked_lock_watch(cluster, http):
    a = await create(http, {"TTL": "10s", "LockDelay": "1ms"})
    await http.put(f"/v1/kv/lock?acquire={a}", data=b"A")
    r = await http.get("/v1/kv/lock")
    watch = asyncio.ensure_future(
        http.get(f"/v1/kv/lock?index={r.headers['X-Consul-Index']}&wait=1m")
    )
    cluster.clock.advance(15)  # past the TTL, inside the grace: still valid
    await http.put(f"/v1/session/renew/{a}")  # renewal restarts the 2 × TTL window
    cluster.clock.advance(15)
    assert [s["ID"] for s in await info(http, a)] == [a]
    assert not watch.done()
    cluster.clock.advance(6)  # 21 s after the renewal: invalidated
    got = await asyncio.wait_for(watch, 5)
    (e,) = await got.json()
    assert e["Session"] == ""
    assert await info(http, a) == []


async def test_a_failed_node_invalidates_its_sessions(cluster, http):
    sid = await create(http)
    await http.put(f"/v1/kv/lock?acquire={sid}", data=b"A")
    cluster.fail_node("dc1", "node-a")
    assert await info(http, sid) == []
    assert (await entry(http, "lock"))["Session"] == ""


async def test_info_blocks_until_the_session_changes(cluster, http):
    sid = await create(http)
    r = await http.get(f"/v1/session/info/{sid}")
    pending = asyncio.ensure_future(
        http.get(f"/v1/session/info/{sid}?index={r.headers['X-Consul-Index']}&wait=1m")
    )
    await poll(lambda: any(p.endswith(sid) and "index" in q for *_, p, q in cluster.request_log))
    assert not pending.done()
    await http.put(f"/v1/session/destroy/{sid}")
    assert await (await asyncio.wait_for(pending, 5)).json() == []


async def test_sessions_need_session_write(cluster, acl_cluster, http):
    r = await http.put("/v1/session/create", json={}, headers={"X-Consul-Token": "gw"})
    assert r.status == 403 and "'session:write' on \"node-a\"" in await r.text()
    acl_cluster.add_token("sess", {"session": {"node-a": "write"}, "key": {"": "write"}})
    hdr = {"X-Consul-Token": "sess"}
    sid = (await (await http.put("/v1/session/create", json={}, headers=hdr)).json())["ID"]
    assert (await http.put(f"/v1/session/renew/{sid}", headers=hdr)).status == 200
    assert (
        await http.put(f"/v1/session/renew/{sid}", headers={"X-Consul-Token": "gw"})
    ).status == 403


async def test_py_consul_session_calls(cluster: ConsulCluster):
    agent = cluster.agent("node-a")
    c = consul.aio.Consul(host="127.0.0.1", port=agent.port)
    try:
        sid = await c.session.create(name="n", ttl=10, lock_delay=0, behavior="release")
        assert await c.kv.put("k", "v", acquire=sid) is True
        _, e = await c.kv.get("k")
        assert e["Session"] == sid
        renewed = await c.session.renew(sid)
        assert renewed["ID"] == sid and renewed["TTL"] == "10s"
        _, s = await c.session.info(sid)
        assert s["LockDelay"] == 0
        assert await c.kv.put("k", "w", release=sid) is True
        assert await c.session.destroy(sid) is True
        with pytest.raises(consul.NotFound):
            await c.session.renew(sid)
    finally:
        await c.close()
