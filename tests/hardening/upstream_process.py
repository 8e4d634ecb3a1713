"""A FakeUpstream in a process of its own, so that a test can SIGSTOP it:
``python -m tests.hardening.upstream_process PORT MODEL NAME [CHUNK_DELAY]``."""

from __future__ import annotations

import asyncio
import sys

from tests.fakes import FakeUpstream, Fault


async def main(port: int, model: str, name: str, chunk_delay: float = 0.0) -> None:
    up = FakeUpstream(model, name=name, chunks=20)
    up.port = port
    if chunk_delay:
        up.always = Fault(chunk_delay=chunk_delay)
    await up.start()
    print(f"ready on {up.url}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    delay = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], delay))
