"""Soak: a fixed request rate through the gateway to several upstream workers, for minutes.

Everything runs on loopback and is started here: ``--upstreams`` OpenAI-compatible upstream
processes (streaming answers of ``--chunks`` chunks, ``--chunk-ms`` apart, like a small model),
the gateway (``switchgear serve``, one process) in front of them, and an open-loop load
generator that starts requests at ``--rps`` (half streaming, half not) for ``--duration``
seconds, at most ``--max-in-flight`` at once. It prints RPS held, p50/p99 latency, time to
first chunk, errors (any non-200, in-band error or stream without ``[DONE]``), and the
gateway's RSS and open file descriptors, sampled every 5 s after a warm-up.

Exit status 1 when there was any error, or RSS grew by more than ``--rss-bound-mb`` from the
first sample (after warm-up) to the last (after ``--settle`` idle seconds), or the open
descriptors did not come back to where they started (+16).

    .venv/bin/python bench/soak.py                       # 60 s at 50 rps
    .venv/bin/python bench/soak.py --duration 300 --rps 100
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

BODY = {"model": "soak", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}


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


def run_upstream(port: int, chunks: int, chunk_ms: float) -> None:
    import orjson
    from aiohttp import web

    def chunk(i: int) -> bytes:
        body = {
            "id": "chatcmpl-soak",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "soak",
            "choices": [{"index": 0, "delta": {"content": f"t{i} "}, "finish_reason": None}],
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"

    answer = orjson.dumps(
        {
            "id": "chatcmpl-soak",
            "object": "chat.completion",
            "created": 0,
            "model": "soak",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "t " * chunks},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 2, "completion_tokens": chunks, "total_tokens": chunks + 2},
        }
    )

    async def chat(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        if not body.get("stream"):
            await asyncio.sleep(chunks * chunk_ms / 1000)
            return web.Response(body=answer, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(chunks):
            await asyncio.sleep(chunk_ms / 1000)
            await resp.write(chunk(i))
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        loop=_loop(),
        handle_signals=True,
    )


def proc_stats(pid: int) -> tuple[float, int]:
    """(RSS in MiB, open file descriptors) of ``pid``."""
    rss = 0.0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


async def wait_up(url: str, within: float = 60) -> None:
    async with asyncio.timeout(within), aiohttp.ClientSession() as s:
        while True:
            try:
                async with s.get(url) as r:
                    if r.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


async def one(session: aiohttp.ClientSession, url: str, stream: bool) -> tuple[float, float, str]:
    """(latency s, time to first byte s, error or '')."""
    t0 = time.perf_counter()
    ttfb = 0.0
    try:
        async with session.post(url, json={**BODY, "stream": stream}) as r:
            if r.status != 200:
                await r.read()
                return time.perf_counter() - t0, 0.0, f"http_{r.status}"
            if not stream:
                body = await r.json()
                ttfb = time.perf_counter() - t0
                return ttfb, ttfb, "" if body.get("choices") else "empty"
            last = b""
            async for line in r.content:
                if not ttfb:
                    ttfb = time.perf_counter() - t0
                if line.startswith(b"data: "):
                    last = line[6:].strip()
                    if b'"error"' in last:
                        return time.perf_counter() - t0, ttfb, "in_band"
            return time.perf_counter() - t0, ttfb, "" if last == b"[DONE]" else "truncated"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return time.perf_counter() - t0, 0.0, type(exc).__name__


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def load(args: argparse.Namespace, gw_url: str, gw_pid: int) -> int:
    url = gw_url + "/v1/chat/completions"
    conn = aiohttp.TCPConnector(limit=args.max_in_flight)
    results: dict[bool, list[tuple[float, float, str]]] = {True: [], False: []}
    samples: list[tuple[float, float, int]] = []
    skipped = 0
    async with aiohttp.ClientSession(connector=conn) as session:
        for _ in range(20):  # warm-up: connections, pools, lazy imports
            await one(session, url, False)
            await one(session, url, True)
        tasks: set[asyncio.Task[None]] = set()

        async def run(stream: bool) -> None:
            results[stream].append(await one(session, url, stream))

        start = time.perf_counter()
        samples.append((0.0, *proc_stats(gw_pid)))
        next_sample = 5.0
        total = int(args.duration * args.rps)
        for i in range(total):
            due = start + i / args.rps
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(tasks) >= args.max_in_flight:
                skipped += 1
                continue
            t = asyncio.create_task(run(i % 2 == 0))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            if time.perf_counter() - start >= next_sample:
                samples.append((next_sample, *proc_stats(gw_pid)))
                next_sample += 5.0
        if tasks:
            await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    # Idle pooled connections (client → gateway → upstream) close after their keep-alive
    # timeouts; descriptors still open after ``--settle`` seconds would be leaks.
    await asyncio.sleep(args.settle)
    samples.append((elapsed + args.settle, *proc_stats(gw_pid)))
    return report(args, results, samples, elapsed, skipped)


def report(
    args: argparse.Namespace,
    results: dict[bool, list[tuple[float, float, str]]],
    samples: list[tuple[float, float, int]],
    elapsed: float,
    skipped: int,
) -> int:
    done = len(results[True]) + len(results[False])
    errors: dict[str, int] = {}
    for rows in results.values():
        for _, _, err in rows:
            if err:
                errors[err] = errors.get(err, 0) + 1
    print(f"target {args.rps:.0f} rps for {args.duration:.0f} s, {args.upstreams} upstreams")
    print(f"completed {done} requests in {elapsed:.1f} s: {done / elapsed:.1f} rps held")
    print(f"not started (in-flight cap): {skipped}")
    for stream, rows in results.items():
        lat = [r[0] for r in rows if not r[2]]
        kind = "stream" if stream else "json  "
        line = f"{kind}: n={len(rows)} p50={pct(lat, 0.5):.1f} ms p99={pct(lat, 0.99):.1f} ms"
        if stream:
            ttfb = [r[1] for r in rows if not r[2]]
            line += f" ttfb p50={pct(ttfb, 0.5):.1f} ms p99={pct(ttfb, 0.99):.1f} ms"
        print(line)
    print(f"errors: {sum(errors.values())} {errors or ''}")
    rss0, fd0 = samples[0][1:]  # after the warm-up, before the load
    rss1, fd1 = samples[-1][1:]  # after the load and --settle idle seconds
    rss_max = max(s[1] for s in samples)
    print(f"gateway RSS: start {rss0:.1f} MiB, end {rss1:.1f} MiB, max {rss_max:.1f} MiB")
    print(f"gateway fds: start {fd0}, end {fd1}, max {max(s[2] for s in samples)}")
    if args.verbose:
        for t, rss, fds in samples:
            print(f"  t={t:6.1f}s rss={rss:.1f} MiB fds={fds}")
    bad = bool(errors) or rss1 - rss0 > args.rss_bound_mb or fd1 > fd0 + 16
    print("PASS" if not bad else "FAIL")
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--rps", type=float, default=50.0)
    p.add_argument("--upstreams", type=int, default=3)
    p.add_argument("--chunks", type=int, default=16)
    p.add_argument("--chunk-ms", type=float, default=5.0)
    p.add_argument("--max-in-flight", type=int, default=256)
    p.add_argument("--rss-bound-mb", type=float, default=20.0)
    p.add_argument("--settle", type=float, default=20.0, help="idle seconds before the last sample")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    if args.duration > 3600 or args.rps > 5000:
        p.error("bounded: --duration ≤ 3600 s, --rps ≤ 5000")
    ctx = mp.get_context("spawn")
    ports = [free_port() for _ in range(args.upstreams)]
    ups = [ctx.Process(target=run_upstream, args=(pt, args.chunks, args.chunk_ms)) for pt in ports]
    for u in ups:
        u.start()
    gw_port = free_port()
    backends = "\n".join(f"  - {{model: soak, url: 'http://127.0.0.1:{pt}/v1'}}" for pt in ports)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "gateway.yaml"
        cfg.write_text(
            f"listen: {{host: 127.0.0.1, port: {gw_port}}}\nbackends:\n{backends}\n"
            "retries: {attempts: 2}\n"
        )
        root = Path(__file__).resolve().parents[1]
        gw = subprocess.Popen(
            [sys.executable, "-m", "switchgear.cli", "serve", "--config", str(cfg)],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            loop = _loop()
            gw_url = f"http://127.0.0.1:{gw_port}"
            loop.run_until_complete(wait_up(gw_url + "/healthz"))
            for pt in ports:
                loop.run_until_complete(wait_up(f"http://127.0.0.1:{pt}/v1/models"))
            rc = loop.run_until_complete(load(args, gw_url, gw.pid))
            loop.close()
        finally:
            gw.terminate()
            gw.wait(timeout=30)
            for u in ups:
                u.terminate()
                u.join(timeout=10)
    return rc


if __name__ == "__main__":
    sys.exit(main())
