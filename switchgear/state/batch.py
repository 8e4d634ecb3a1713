"""Lua script calls of one event-loop turn, sent together in one pipeline.

Under load many requests check their limits in the same turn of the event loop; sending
each ``EVALSHA`` on its own costs a connection and a round trip each. :class:`ScriptBatch`
queues the calls of one turn and sends them in a single non-transactional pipeline on one
connection (each script stays atomic on its own), then resolves every caller's future.
Scripts are sent by SHA; a Redis that lost them (a restart) answers ``NOSCRIPT``, and the
batch loads them and is sent once more.

A batch of one is sent as a plain ``EVALSHA`` (a pipeline of one costs more).
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


_Call = tuple[Script, tuple[Any, ...], "asyncio.Future[Any]"]


class ScriptBatch:
    def __init__(self, store: RedisStore, op: str) -> None:
        self.store, self.op = store, op
        self._pending: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def call(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, (len(keys), *keys, *args), fut))
        if len(self._pending) == 1:
            loop.call_soon(self._send_pending)  # after this turn: the others queue up first
        return await fut

    def _send_pending(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        if len(batch) == 1:  # a pipeline of one costs more than the plain call
            script, argv, _ = batch[0]
            try:
                return [await self.store.client.evalsha(script.sha, *argv)]
            except NoScriptError:
                await self.store.client.script_load(script.source)
                return [await self.store.client.evalsha(script.sha, *argv)]
        pipe = self.store.client.pipeline(transaction=False)
        for script, argv, _ in batch:
            pipe.evalsha(script.sha, *argv)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        if any(isinstance(r, NoScriptError) for r in results):
            for source in {s.source for s, _, _ in batch}:
                await self.store.client.script_load(source)
            return await self._execute(batch)
        return results

    async def _send(self, batch: list[_Call]) -> None:
        try:
            results = await self.store.call(self.op, self._execute(batch))
        except FAILURES as exc:
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        except BaseException as exc:  # cancelled at shutdown: nobody may wait forever
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(ConnectionError(f"state call abandoned: {exc!r}"))
            raise
        for (_, _, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
