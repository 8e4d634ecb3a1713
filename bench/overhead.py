"""How much the gateway adds to a request: the same workload direct and through it, interleaved.

Three processes: a fast OpenAI-compatible upstream, the gateway (``switchgear serve``, one
worker) and a load generator. For each scenario (non-streaming at concurrency 1, 16, 64;
streaming with 32 chunks at 16) rounds alternate direct / through the gateway, so drift on a
shared machine hits both alike. Printed per scenario and target: RPS, p50 and p99 latency,
the gateway/direct ratio, and the gateway's CPU time per proxied request, read from
/proc/<pid>/stat of the gateway process during its rounds only.

    .venv/bin/python bench/overhead.py [--seconds 1.0] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BODY = {"model": "bench", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
CHUNKS = 32
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


# --- the upstream -------------------------------------------------------------------------


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
    frames = b"".join(
        b"data: "
        + orjson.dumps(
            {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "bench",
                "choices": [{"index": 0, "delta": {"content": f"t{i} "}, "finish_reason": None}],
            }
        )
        + b"\n\n"
        for i in range(CHUNKS)
    )

    async def chat(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        if not body.get("stream"):
            return web.Response(body=answer, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for frame in frames.split(b"\n\n")[:-1]:
            await resp.write(frame + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=_loop())


# --- the load generator -------------------------------------------------------------------


async def _drive(url: str, concurrency: int, seconds: float, stream: bool) -> list[float]:
    import aiohttp
    import orjson

    body = orjson.dumps({**BODY, "stream": stream})
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as http:

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                async with http.post(url, data=body, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"HTTP {r.status}")
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def run_loadgen(conn: mp.connection.Connection) -> None:
    loop = _loop()
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(loop.run_until_complete(_drive(*job)))


# --- orchestration --------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def wait_port(port: int, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="length of one round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per target and scenario")
    args = ap.parse_args()

    ctx = mp.get_context("spawn")
    up_port, gw_port = free_port(), free_port()
    upstream = ctx.Process(target=run_upstream, args=(up_port,), daemon=True)
    upstream.start()
    cfg = Path(tempfile.mkdtemp()) / "gateway.yaml"
    cfg.write_text(f'backends: [{{model: bench, url: "http://127.0.0.1:{up_port}/v1"}}]\n')
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "switchgear.cli",
            "--log-level",
            "WARNING",
            "serve",
            "--config",
            str(cfg),
            "--port",
            str(gw_port),
        ]
    )
    parent, child = ctx.Pipe()
    loadgen = ctx.Process(target=run_loadgen, args=(child,), daemon=True)
    loadgen.start()
    try:
        wait_port(up_port)
        wait_port(gw_port)
        direct = f"http://127.0.0.1:{up_port}/v1/chat/completions"
        proxied = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
        scenarios = [
            ("c=1", 1, False),
            ("c=16", 16, False),
            ("c=64", 64, False),
            ("stream c=16 x32", 16, True),
        ]
        print(
            f"{'scenario':<18}{'target':<9}{'RPS':>8}{'p50 ms':>9}{'p99 ms':>9}{'p50 ratio':>11}"
            f"{'gw CPU/req':>12}"
        )
        for name, conc, stream in scenarios:
            for url in (direct, proxied):  # warm-up: connections, caches
                parent.send((url, conc, 0.3, stream))
                parent.recv()
            lat: dict[str, list[float]] = {"direct": [], "gateway": []}
            secs = {"direct": 0.0, "gateway": 0.0}
            cpu = 0.0
            for _ in range(args.rounds):
                for target, url in (("direct", direct), ("gateway", proxied)):
                    c0, t0 = cpu_seconds(gateway.pid), time.perf_counter()
                    parent.send((url, conc, args.seconds, stream))
                    got = parent.recv()
                    secs[target] += time.perf_counter() - t0
                    lat[target] += got
                    if target == "gateway":
                        cpu += cpu_seconds(gateway.pid) - c0
            ratio = statistics.median(lat["gateway"]) / statistics.median(lat["direct"])
            for target in ("direct", "gateway"):
                v = lat[target]
                per_req = f"{cpu / len(v) * 1000:.3f} ms" if target == "gateway" else ""
                print(
                    f"{name:<18}{target:<9}{len(v) / secs[target]:>8.0f}{pct(v, 0.5):>9.2f}{pct(v, 0.99):>9.2f}"
                    f"{(f'{ratio:.2f}x' if target == 'gateway' else ''):>11}{per_req:>12}"
                )
            added = pct(lat["gateway"], 0.5) - pct(lat["direct"], 0.5)
            print(f"{'':<18}added p50: {added:.2f} ms")
        return 0
    finally:
        parent.send(None)
        gateway.terminate()
        gateway.wait(timeout=10)
        upstream.terminate()
        loadgen.join(timeout=5)


if __name__ == "__main__":
    sys.exit(main())
