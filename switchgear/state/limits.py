"""Rate limits shared by every process on one Redis: GCRA, one Lua script per check.

GCRA (the generic cell rate algorithm) keeps one number per bucket, its *theoretical
arrival time* (TAT): the moment the bucket would be full again. For a limit of ``L`` per
minute each unit costs ``60 / L`` seconds; a request of ``n`` units fits when
``max(TAT, now) + n * 60 / L - now <= 60`` (a full minute of burst, the same as the local
token bucket), and then TAT moves there. ``Retry-After`` is the time until it would fit:
``new_TAT - 60 - now``. A request with both limits is checked and charged by one script, so
concurrent gateways cannot both take the last unit; "now" is Redis's ``TIME``, so the
gateways' clocks never matter. Keys expire when their bucket is full again.

Calls of one event-loop turn go to Redis as one script call (:mod:`switchgear.state.batch`).

Settling replaces the up-front token estimate by what the answer used: TAT moves by
``(used - estimate) * 60 / L`` and never below now (a full bucket does not overflow), so a
stream that used more than its estimate leaves a debt the next requests wait for.
"""

from __future__ import annotations

from switchgear.state.batch import Script, ScriptBatch
from switchgear.state.local import Refusal
from switchgear.state.store import RedisStore

_TAKE = Script("""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local rpm, tpm, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rtat, ttat
if rpm > 0 then
  rtat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now) + 60 / rpm
  if rtat - now > 60.000001 then
    return {1, string.format('%.6f', rtat - 60 - now)}
  end
end
if tpm > 0 and cost > 0 then
  ttat = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), now) + math.min(cost, tpm) * 60 / tpm
  if ttat - now > 60.000001 then
    return {2, string.format('%.6f', ttat - 60 - now)}
  end
end
if rtat then
  redis.call('SET', KEYS[1], string.format('%.6f', rtat), 'PX', math.ceil((rtat - now) * 1000) + 1000)
end
if ttat then
  redis.call('SET', KEYS[2], string.format('%.6f', ttat), 'PX', math.ceil((ttat - now) * 1000) + 1000)
end
return {0, '0'}
""")

_SETTLE = Script("""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local tpm, estimated, used = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
tat = math.max(math.max(tat, now) + (used - math.min(estimated, tpm)) * 60 / tpm, now)
if tat - now < 0.001 then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%.6f', tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
end
return 1
""")

_WHICH = {1: "requests", 2: "tokens"}


class RedisLimits:
    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self._batch = ScriptBatch(store, "rate_limit")

    def _keys(self, key: str) -> list[str]:
        base = self.store.key("rl", key)
        return [base + ":r", base + ":t"]

    async def take(self, key: str, rpm: int | None, tpm: int | None, tokens: int) -> Refusal | None:
        """Like :meth:`LocalLimits.take`, for the whole fleet; raises when Redis fails."""
        code, wait = await self._batch.call(_TAKE, self._keys(key), [rpm or 0, tpm or 0, tokens])
        if int(code) == 0:
            return None
        return _WHICH[int(code)], float(wait)

    async def settle(self, key: str, tpm: int, estimated: int, used: int) -> None:
        await self._batch.call(_SETTLE, self._keys(key)[1:], [tpm, estimated, used])
