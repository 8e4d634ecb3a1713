"""How a normal client fares while another client holds thousands of idle sockets open.

Processes on loopback: a fast OpenAI-compatible upstream, the gateway (``switchgear serve``,
one process, default ``edge:`` limits unless ``--cap`` / ``--header-timeout`` are given),
``--flooders`` flood processes that each open ``--sockets`` idle connections and hold them
(never sending a byte), and the measuring client here: sequential chat requests, each on a
new connection, as a new client would come.

Phase 1 measures the client alone (baseline), phase 2 the same client for ``--seconds``
once every flood socket is connected (the hold). The gateway's peak descriptors and RSS
are sampled from the flood's first connection on. Printed: requests, failures, p50 / p99 latency of each phase and their ratio, the
gateway's open descriptors and RSS (at the end of the baseline, the peak during the flood), and how many flood sockets
the gateway closed while the flood held them. Every loop is bounded by ``--seconds``.

    .venv/bin/python bench/edge_flood.py [--sockets 10000] [--flooders 2] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BODY = {"model": "bench", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _nofile(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def run_upstream(port: int) -> None:
    import orjson
    from aiohttp import web

    answer = orjson.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "ok"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=answer, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def run_flooder(port: int, sockets: int, seconds: float, ready: Any, out: Any) -> None:
    """Open ``sockets`` idle connections (in batches), hold them ``seconds``, report counts."""
    _nofile(sockets + 256)

    async def main() -> dict[str, int]:
        loop = asyncio.get_running_loop()
        counts = {"connected": 0, "failed": 0, "closed_by_gateway": 0}
        held: list[socket.socket] = []

        async def connect() -> None:
            s = socket.socket()
            s.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", port)), 10)
            except (OSError, TimeoutError):
                counts["failed"] += 1
                s.close()
                return
            counts["connected"] += 1
            held.append(s)

        for i in range(0, sockets, 500):  # bounded: connect in batches
            await asyncio.gather(*(connect() for _ in range(min(500, sockets - i))))
        ready.set()

        async def watch(s: socket.socket) -> None:
            try:
                await loop.sock_recv(s, 1024)  # returns when the gateway answers 408 or closes
                counts["closed_by_gateway"] += 1
            except OSError:
                counts["closed_by_gateway"] += 1

        watchers = [asyncio.create_task(watch(s)) for s in held]
        await asyncio.wait(watchers, timeout=seconds)
        for w in watchers:
            w.cancel()
        for s in held:
            s.close()
        return counts

    out.put(asyncio.run(main()))


def _proc_stats(pid: int) -> tuple[int, float]:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss_kb = next(
        int(ln.split()[1]) for ln in open(f"/proc/{pid}/status") if ln.startswith("VmRSS:")
    )
    return fds, rss_kb / 1024


async def measure(port: int, seconds: float) -> tuple[list[float], int]:
    """Sequential requests, each on a new connection, for ``seconds``."""
    import aiohttp

    latencies: list[float] = []
    failures = 0
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=10)
    while time.monotonic() < deadline:
        conn = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:
            t0 = time.perf_counter()
            try:
                async with s.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=BODY) as r:
                    await r.read()
                    ok = r.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                latencies.append((time.perf_counter() - t0) * 1000)
            else:
                failures += 1
    return latencies, failures


def _pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100)[q - 1] if len(xs) > 1 else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sockets", type=int, default=10000, help="idle sockets per flooder")
    ap.add_argument("--flooders", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--cap", type=int, default=None, help="edge.max_connections")
    ap.add_argument("--header-timeout", type=float, default=None, help="edge.header_timeout")
    args = ap.parse_args()
    up_port, gw_port = free_port(), free_port()
    up = mp.Process(target=run_upstream, args=(up_port,), daemon=True)
    up.start()
    edge: dict[str, float] = {}
    if args.cap:
        edge["max_connections"] = args.cap
    if args.header_timeout:
        edge["header_timeout"] = args.header_timeout
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "gw.yaml"
        cfg.write_text(
            f"listen: {{host: 127.0.0.1, port: {gw_port}}}\n"
            f"backends: [{{model: bench, url: 'http://127.0.0.1:{up_port}/v1'}}]\n"
            "health_checks: {enabled: false}\n"
            f"edge: {edge or '{}'}\n"
        )
        gw = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "switchgear.cli",
                "--log-level",
                "WARNING",
                "serve",
                "-c",
                str(cfg),
            ],
            stderr=open(Path(tmp) / "gw.log", "wb"),  # noqa: SIM115 - closed with the process
        )
        try:
            return asyncio.run(_run(args, gw, gw_port, Path(tmp) / "gw.log"))
        finally:
            gw.terminate()
            gw.wait(30)
            up.terminate()


async def _run(args: argparse.Namespace, gw: subprocess.Popen[bytes], port: int, log: Path) -> int:
    import aiohttp

    async with asyncio.timeout(60):
        while True:
            try:
                async with (
                    aiohttp.ClientSession() as s,
                    s.get(f"http://127.0.0.1:{port}/healthz") as r,
                ):
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)  # waiting for the gateway to listen
    base, base_fail = await measure(port, args.seconds)
    base_fds, base_rss = _proc_stats(gw.pid)
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    readies = [ctx.Event() for _ in range(args.flooders)]
    floods = [
        ctx.Process(target=run_flooder, args=(port, args.sockets, args.seconds, ev, out))
        for ev in readies
    ]
    for f in floods:
        f.start()
    peak = [0, 0.0]

    async def sample() -> None:
        while True:
            fds, rss = _proc_stats(gw.pid)
            peak[0], peak[1] = max(peak[0], fds), max(peak[1], rss)
            await asyncio.sleep(0.25)  # sampling /proc while the flood is held

    sampler = asyncio.create_task(sample())
    t_flood = time.monotonic()
    await asyncio.to_thread(lambda: [ev.wait(120) for ev in readies])
    connected_in = time.monotonic() - t_flood
    flood, flood_fail = await measure(port, args.seconds)
    sampler.cancel()
    flood_fds, flood_rss = peak[0], peak[1]
    counts = await asyncio.to_thread(lambda: [out.get(timeout=120) for _ in floods])
    for f in floods:
        f.join(30)
    connected = sum(c["connected"] for c in counts)
    closed = sum(c["closed_by_gateway"] for c in counts)
    failed = sum(c["failed"] for c in counts)
    print(
        f"flood: {args.flooders} x {args.sockets} idle sockets: {connected} connected "
        f"in {connected_in:.1f} s ({failed} connects failed), {closed} closed by the "
        f"gateway while held; the client was measured for {args.seconds:g} s after that"
    )
    for name, lat, fail, fds, rss in (
        ("alone", base, base_fail, base_fds, base_rss),
        ("flood", flood, flood_fail, flood_fds, flood_rss),
    ):
        print(
            f"{name:6} requests {len(lat):5d}  failed {fail:3d}  p50 {_pct(lat, 50):7.2f} ms  "
            f"p99 {_pct(lat, 99):7.2f} ms  gateway fds {fds:6d}  rss {rss:6.1f} MiB"
        )
    print(
        f"ratio flood/alone: p50 {_pct(flood, 50) / _pct(base, 50):.2f}  "
        f"p99 {_pct(flood, 99) / _pct(base, 99):.2f}"
    )
    text = await asyncio.to_thread(log.read_text)
    caps = [ln for ln in text.splitlines() if "connection cap reached" in ln]
    print(f"gateway log: {len(caps)} 'connection cap reached' line(s)")
    if caps:
        print("  " + caps[0].split(": ", 1)[-1])
    return 0 if flood_fail == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
