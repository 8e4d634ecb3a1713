"""How a normal client fares while another client holds thousands of idle sockets open.

Processes on loopback: a fast OpenAI-compatible upstream, the gateway (``switchgear serve``,
one process, default ``edge:`` limits unless ``--cap`` is given), ``--flooders`` flood
processes that each keep ``--sockets`` idle connections open (reopening every one the
gateway closes, until the phase ends), and the measuring client here: sequential chat
requests, each on a new connection, as a new client would come.

Phase 1 measures the client alone (baseline), phase 2 the same client while the flood is
held. Printed: requests, failures, p50 / p99 latency of each phase and their ratio, the
gateway's open descriptors and RSS (at the end of the baseline, the peak during the flood), and how many flood sockets
were open at the end (on the flooders' side). Every loop is bounded by ``--seconds``.

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


def run_flooder(port: int, sockets: int, seconds: float, ready: mp.Event, out: mp.Queue) -> None:
    _nofile(sockets + 256)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        open_now: set[socket.socket] = set()
        counts = {"connects": 0, "failed": 0, "peak": 0}

        async def hold() -> None:
            while loop.time() < deadline:
                s = socket.socket()
                s.setblocking(False)
                try:
                    await asyncio.wait_for(
                        loop.sock_connect(s, ("127.0.0.1", port)), deadline - loop.time()
                    )
                    counts["connects"] += 1
                    open_now.add(s)
                    counts["peak"] = max(counts["peak"], len(open_now))
                    await asyncio.wait_for(loop.sock_recv(s, 1024), deadline - loop.time())
                except (OSError, TimeoutError):
                    counts["failed"] += 1
                finally:
                    open_now.discard(s)
                    s.close()
                await asyncio.sleep(0.05)  # the gateway closed it: reopen, a little later

        tasks = []
        for i in range(0, sockets, 500):  # bounded: connect in batches
            tasks += [asyncio.create_task(hold()) for _ in range(min(500, sockets - i))]
            await asyncio.sleep(0.05)
        ready.set()
        await asyncio.sleep(max(0.0, deadline - loop.time() - 0.5))
        counts["held"] = len(open_now)
        await asyncio.gather(*tasks, return_exceptions=True)
        return counts

    out.put(asyncio.run(main()))


def _proc_stats(pid: int) -> tuple[int, float]:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss_kb = next(
        int(ln.split()[1]) for ln in open(f"/proc/{pid}/status") if ln.startswith("VmRSS:")
    )
    return fds, rss_kb / 1024


async def measure(port: int, seconds: float) -> tuple[list[float], int]:
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
    args = ap.parse_args()
    up_port, gw_port = free_port(), free_port()
    up = mp.Process(target=run_upstream, args=(up_port,), daemon=True)
    up.start()
    edge = {"max_connections": args.cap} if args.cap else {}
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
        ctx.Process(target=run_flooder, args=(port, args.sockets, args.seconds + 15, ev, out))
        for ev in readies
    ]
    for f in floods:
        f.start()
    await asyncio.to_thread(lambda: [ev.wait(60) for ev in readies])
    peak = [0, 0.0]

    async def sample() -> None:
        while True:
            fds, rss = _proc_stats(gw.pid)
            peak[0], peak[1] = max(peak[0], fds), max(peak[1], rss)
            await asyncio.sleep(0.25)  # sampling /proc while the flood is held

    sampler = asyncio.create_task(sample())
    flood, flood_fail = await measure(port, args.seconds)
    sampler.cancel()
    flood_fds, flood_rss = peak[0], peak[1]
    counts = await asyncio.to_thread(lambda: [out.get(timeout=60) for _ in floods])
    held = sum(c["held"] for c in counts)
    for f in floods:
        f.join(30)
    total = args.sockets * args.flooders
    print(
        f"flood: {args.flooders} x {args.sockets} = {total} idle sockets kept open; "
        f"{held} open at the end (the rest closed by the gateway and being reopened)"
    )
    for i, c in enumerate(counts):
        print(
            f"  flooder {i}: {c['connects']} connects, peak {c['peak']} open at once, "
            f"{c['failed']} connects failed or timed out"
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
