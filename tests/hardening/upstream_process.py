"""A FakeUpstream in a process of its own, so that a test can SIGSTOP it:
``python -m tests.hardening.upstream_process PORT MODEL NAME``."""

from __future__ import annotations

import asyncio
import sys

from tests.fakes import FakeUpstream


async def main(port: int, model: str, name: str) -> None:
    up = FakeUpstream(model, name=name)
    up.port = port
    await up.start()
    print(f"ready on {up.url}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
