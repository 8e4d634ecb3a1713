"""Lua script calls of one event-loop turn, sent together as one script.

Under load many requests check their limits in the same turn of the event loop; sending
each ``EVALSHA`` on its own costs a round trip and a command each. :class:`ScriptBatch`
queues the calls of one turn and sends them as **one** ``EVALSHA`` of a combined script:
every queued script becomes a Lua function, the calls are flattened into ``KEYS``/``ARGV``
(a header in ``ARGV`` says which function takes how many keys and arguments) and the script
returns one reply per call, in order. A Lua script is atomic as a whole, so each call stays
atomic (the batch is, too); each function still reads Redis's clock with ``TIME``. A call
that raises an error inside Redis fails on its own (its function runs under ``pcall``), the
others still answer. Scripts are sent by SHA; a Redis that lost them (a restart,
``SCRIPT FLUSH``) answers ``NOSCRIPT``, and the batch loads the script and sends it once more.

A batch of one is sent as a plain ``EVALSHA`` of its own script (no wrapper to run).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from redis.exceptions import NoScriptError

from switchgear.state.store import FAILURES, RedisStore


class Script:
    __slots__ = ("source", "sha")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


# ARGV of the combined script: the number of calls, then per call its function's index and
# its numbers of keys and arguments; then every call's arguments in order (KEYS: every
# call's keys in order). A reply of nil would cut Lua's array short: it comes back as false.
_DISPATCH = """
local out, k, h = {}, 1, 2
local a = 2 + 3 * tonumber(ARGV[1])
for i = 1, tonumber(ARGV[1]) do
  local fn, nk, na = FNS[tonumber(ARGV[h])], tonumber(ARGV[h + 1]), tonumber(ARGV[h + 2])
  h = h + 3
  local keys, args = {}, {}
  for j = 1, nk do keys[j] = KEYS[k + j - 1] end
  for j = 1, na do args[j] = ARGV[a + j - 1] end
  k, a = k + nk, a + na
  local ok, r = pcall(fn, keys, args)
  if not ok then
    r = {err = type(r) == 'table' and r.err or tostring(r)}
  elseif r == nil then
    r = false
  end
  out[i] = r
end
return out
"""


def combined(scripts: tuple[Script, ...]) -> Script:
    """One script that runs calls of ``scripts`` (function ``i`` is ``scripts[i - 1]``)."""
    fns = "".join(
        f"FNS[{i}] = function(KEYS, ARGV)\n{s.source}\nend\n" for i, s in enumerate(scripts, 1)
    )
    return Script("local FNS = {}\n" + fns + _DISPATCH)


_Call = tuple[Script, list[str], list[Any], "asyncio.Future[Any]"]


class ScriptBatch:
    def __init__(self, store: RedisStore, op: str) -> None:
        self.store, self.op = store, op
        self._pending: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._combined: dict[tuple[str, ...], Script] = {}

    async def call(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, keys, args, fut))
        if len(self._pending) == 1:
            loop.call_soon(self._send_pending)  # after this turn: the others queue up first
        return await fut

    def _send_pending(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _flatten(self, batch: list[_Call]) -> tuple[Script, list[Any]]:
        """The combined script of ``batch``'s scripts and its ``numkeys, *KEYS, *ARGV``."""
        scripts = {s.sha: s for s, _, _, _ in batch}
        order = tuple(sorted(scripts))  # one combined script per set of scripts
        script = self._combined.get(order)
        if script is None:
            script = self._combined[order] = combined(tuple(scripts[sha] for sha in order))
        index = {sha: i for i, sha in enumerate(order, 1)}
        keys: list[Any] = []
        header: list[Any] = [len(batch)]
        args: list[Any] = []
        for s, k, a, _ in batch:
            header += (index[s.sha], len(k), len(a))
            keys += k
            args += a
        return script, [len(keys), *keys, *header, *args]

    async def _evalsha(self, script: Script, argv: list[Any]) -> Any:
        try:
            return await self.store.client.evalsha(script.sha, *argv)
        except NoScriptError:
            await self.store.client.script_load(script.source)
            return await self.store.client.evalsha(script.sha, *argv)

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        if len(batch) == 1:  # the call's own script: no wrapper to run
            script, keys, args, _ = batch[0]
            return [await self._evalsha(script, [len(keys), *keys, *args])]
        results: list[Any] = await self._evalsha(*self._flatten(batch))
        return results

    async def _send(self, batch: list[_Call]) -> None:
        try:
            results = await self.store.call(self.op, self._execute(batch))
        except FAILURES as exc:
            for *_, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        except BaseException as exc:  # cancelled at shutdown: nobody may wait forever
            for *_, fut in batch:
                if not fut.done():
                    fut.set_exception(ConnectionError(f"state call abandoned: {exc!r}"))
            raise
        for (*_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
