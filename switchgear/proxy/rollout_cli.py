"""``switchgear rollout MODEL PATH``: start a rollout on a gateway and follow it.

It calls ``POST /admin/rollouts`` with the admin key (``--admin-key``, else
``SWITCHGEAR_ADMIN_KEY``), then, with ``--wait``, polls ``GET /admin/rollouts`` until the
rollout ends. Prints one line per change of a worker's phase and the final state; exits 0
when the rollout succeeded, 1 otherwise (refused, rolled back, failed, or an API error).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import aiohttp

POLL_S = 0.5


async def _rollout(url: str, key: str, body: dict[str, Any], wait: bool) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{url}/admin/rollouts", json=body) as r:
            data = await r.json(content_type=None)
        if r.status != 202:
            print(f"error ({r.status}): {data['error']['message']}", file=sys.stderr)
            return 1
        rid, seen = data["id"], ""
        print(f"rollout {rid} of {body['model']} -> {body['path']}: {data['state']}")
        while wait and data["state"] == "running":
            await asyncio.sleep(POLL_S)  # the API has no change feed; a polling tick
            async with http.get(f"{url}/admin/rollouts") as r:
                rows = (await r.json())["data"]
            data = next(x for x in rows if x["id"] == rid)
            line = " ".join(f"{w['backend_id']}={w['phase']}" for w in data["workers"])
            if line != seen:
                print(line)
                seen = line
        print(f"{data['state']}{': ' + data['reason'] if data.get('reason') else ''}")
        return 0 if data["state"] in ("succeeded", "running") else 1


def rollout_cli(
    model: str,
    path: str,
    url: str,
    steps: list[float],
    admin_key: str | None,
    wait: bool,
    options: dict[str, str],
) -> int:
    key = admin_key or os.environ.get("SWITCHGEAR_ADMIN_KEY", "")
    opts: dict[str, Any] = {
        k: float(v) if k != "min_samples" else int(v) for k, v in options.items()
    }
    body = {"model": model, "path": path, "steps": steps, "options": opts}
    try:
        return asyncio.run(_rollout(url.rstrip("/"), key, body, wait))
    except aiohttp.ClientError as exc:
        print(f"error: gateway at {url} unreachable: {exc}", file=sys.stderr)
        return 1
