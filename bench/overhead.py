"""How much the gateway adds to a request, against the upstream direct and a bare aiohttp proxy.

Separate processes: a fast OpenAI-compatible upstream (uvloop when installed), the gateway
(``switchgear serve``), the bare aiohttp pass-through of ``bench/bare_proxy.py`` (the floor an
aiohttp gateway cannot go below), optionally the gateway with ``--workers N`` and the
``asyncio.Protocol`` + httptools prototype of ``bench/protocol_proxy.py`` (``--floor``), and
an aiohttp load generator. ``--compare DIR`` adds the gateway of another checkout (its code
on ``PYTHONPATH``, e.g. a worktree of the main branch) as the target ``switchgear (DIR)``,
so a change reads against its base in one interleaved run. For each scenario (non-streaming at concurrency 1, 16, 64;
streaming with 32 chunks at 16) rounds interleave the targets, so drift on a shared machine
hits all alike. Printed per scenario and target: RPS, p50 and p99 latency, the server's CPU
time per request (read from /proc of the serving process and its children during that
target's rounds only; for ``direct`` it is the upstream's), and both as ratios against the
bare pass-through, which are stable across machines where absolute figures are not. For the
stream it prints switchgear's own CPU per chunk (its CPU per stream minus the bare proxy's,
over 33 frames). The result goes to a JSON file and a PNG chart.

    .venv/bin/python bench/overhead.py [--quick] [--seconds 1.0] [--rounds 3] [--workers N]
        [--floor] [--compare DIR] [--json PATH] [--png PATH]
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

BODY = {"model": "bench", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
CHUNKS = 32
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_loop() -> asyncio.AbstractEventLoop:
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
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=new_loop())


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
    loop = new_loop()
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(loop.run_until_complete(_drive(*job)))


# --- orchestration --------------------------------------------------------------------------

SCENARIOS = [("c=1", 1, False), ("c=16", 16, False), ("c=64", 64, False), ("stream c=16", 16, True)]
HERE = Path(__file__).resolve().parent


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its live children (the workers of ``--workers N``)."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = (task / "children").read_text().split()
        except FileNotFoundError:
            continue
        for kid in map(int, kids):
            out += [kid, *_children(kid)]
    return out


def wait_port(port: int, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)  # a process starting up: nothing to poll but the port
    raise SystemExit(f"nothing listens on port {port}")


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000


def _gateway(
    cfg: Path, port: int, workers: int, code: Path | None = None
) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "switchgear.cli", "--log-level", "WARNING", "serve"]
    cmd += ["--config", str(cfg), "--port", str(port), "--workers", str(workers)]
    if code is None:
        return subprocess.Popen(cmd)
    env = {**os.environ, "PYTHONPATH": str(code), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.Popen(cmd, env=env, cwd=tempfile.gettempdir())


def _script(name: str, port: int, upstream: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(HERE / name), str(port), upstream])


def start_targets(args: argparse.Namespace, up_port: int) -> dict[str, tuple[int, int]]:
    """Start the servers; returns ``{target: (port, pid)}`` (``direct`` is the upstream)."""
    cfg = Path(tempfile.mkdtemp()) / "gateway.yaml"
    cfg.write_text(f'backends: [{{model: bench, url: "http://127.0.0.1:{up_port}/v1"}}]\n')
    base = f"http://127.0.0.1:{up_port}"
    procs: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    port = free_port()
    procs["switchgear"] = port, _gateway(cfg, port, 1)
    port = free_port()
    procs["bare aiohttp"] = port, _script("bare_proxy.py", port, base)
    if args.workers > 1:
        port = free_port()
        procs[f"switchgear x{args.workers}"] = port, _gateway(cfg, port, args.workers)
    if args.compare is not None:
        port = free_port()
        procs[f"switchgear ({args.compare.name})"] = port, _gateway(cfg, port, 1, args.compare)
    if args.floor:
        port = free_port()
        procs["protocol+httptools"] = port, _script("protocol_proxy.py", port, base)
    PROCS.extend(p for _, p in procs.values())
    for port, _ in procs.values():
        wait_port(port)
    return {name: (port, p.pid) for name, (port, p) in procs.items()}


PROCS: list[subprocess.Popen[bytes]] = []


def measure(
    args: argparse.Namespace, parent: mp.connection.Connection, targets: dict[str, tuple[int, int]]
) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, conc, stream in SCENARIOS:
        urls = {
            t: f"http://127.0.0.1:{port}/v1/chat/completions" for t, (port, _) in targets.items()
        }
        for url in urls.values():  # warm-up: connections, caches
            parent.send((url, conc, 0.2 if args.quick else 0.3, stream))
            parent.recv()
        lat = {t: [] for t in targets}  # type: dict[str, list[float]]
        secs = dict.fromkeys(targets, 0.0)
        cpu = dict.fromkeys(targets, 0.0)
        order = list(targets)
        for r in range(args.rounds):
            for t in order[r % len(order) :] + order[: r % len(order)]:  # rotate who goes first
                pid = targets[t][1]
                c0, t0 = cpu_seconds(pid), time.perf_counter()
                parent.send((urls[t], conc, args.seconds, stream))
                got = parent.recv()
                secs[t] += time.perf_counter() - t0
                cpu[t] += cpu_seconds(pid) - c0
                lat[t] += got
        out[name] = {
            t: {
                "rps": len(lat[t]) / secs[t],
                "p50_ms": pct(lat[t], 0.5),
                "p99_ms": pct(lat[t], 0.99),
                "cpu_ms_per_req": cpu[t] / len(lat[t]) * 1000,
                "requests": len(lat[t]),
            }
            for t in targets
        }
        bare = out[name]["bare aiohttp"]
        for row in out[name].values():
            row["rps_vs_bare"] = row["rps"] / bare["rps"]
            row["cpu_vs_bare"] = row["cpu_ms_per_req"] / bare["cpu_ms_per_req"]
    return out


def report(
    args: argparse.Namespace, scenarios: dict[str, dict[str, dict[str, float]]]
) -> dict[str, object]:
    print(
        f"{'scenario':<13}{'target':<20}{'RPS':>8}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'CPU/req':>10}{'RPS/bare':>10}{'CPU/bare':>10}"
    )
    for name, rows in scenarios.items():
        for t, r in rows.items():
            print(
                f"{name:<13}{t:<20}{r['rps']:>8.0f}{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}"
                f"{r['cpu_ms_per_req']:>8.3f}ms{r['rps_vs_bare']:>9.2f}x{r['cpu_vs_bare']:>9.2f}x"
            )
    stream = scenarios["stream c=16"]
    frames = CHUNKS + 1
    per_chunk = {
        t: (r["cpu_ms_per_req"] - stream["bare aiohttp"]["cpu_ms_per_req"]) * 1000 / frames
        for t, r in stream.items()
        if t != "direct"
    }
    print(f"stream, CPU per chunk above the bare proxy ({frames} frames): ", end="")
    print(", ".join(f"{t} {us:.1f} us" for t, us in per_chunk.items()))
    result: dict[str, object] = {
        "machine": f"{os.cpu_count()} CPUs, {args.rounds} rounds of {args.seconds} s",
        "targets": list(next(iter(scenarios.values()))),
        "scenarios": scenarios,
        "stream_chunks": CHUNKS,
        "stream_cpu_us_per_chunk_above_bare": per_chunk,
    }
    if args.workers > 1:
        multi = f"switchgear x{args.workers}"
        scaling = {
            name: {
                "rps_vs_one_process": rows[multi]["rps"] / rows["switchgear"]["rps"],
                "rps_per_gateway_core": rows[multi]["rps"] / args.workers,
                "cpu_per_req_vs_one_process": rows[multi]["cpu_ms_per_req"]
                / rows["switchgear"]["cpu_ms_per_req"],
            }
            for name, rows in scenarios.items()
        }
        for name, s in scaling.items():
            print(
                f"{name:<13}{multi}: {s['rps_vs_one_process']:.2f}x the RPS of one process, "
                f"{s['rps_per_gateway_core']:.0f} RPS per gateway core, CPU/req "
                f"{s['cpu_per_req_vs_one_process']:.2f}x one process's"
            )
        result["workers"] = scaling
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="length of one round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per target and scenario")
    ap.add_argument("--quick", action="store_true", help="CI-sized: 2 rounds of 0.4 s")
    ap.add_argument("--workers", type=int, default=1, help="also run the gateway with N workers")
    ap.add_argument("--floor", action="store_true", help="also run bench/protocol_proxy.py")
    ap.add_argument("--compare", type=Path, help="also run the gateway of this checkout")
    ap.add_argument("--json", type=Path, default=Path("artifacts/overhead.json"))
    ap.add_argument("--png", type=Path, default=Path("artifacts/overhead.png"))
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.rounds = 0.4, 2

    ctx = mp.get_context("spawn")
    up_port = free_port()
    upstream = ctx.Process(target=run_upstream, args=(up_port,), daemon=True)
    upstream.start()
    parent, child = ctx.Pipe()
    loadgen = ctx.Process(target=run_loadgen, args=(child,), daemon=True)
    loadgen.start()
    try:
        wait_port(up_port)
        assert upstream.pid is not None
        targets = {"direct": (up_port, upstream.pid), **start_targets(args, up_port)}
        result = report(args, measure(args, parent, targets))
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson_dumps(result))
        from chart import write_chart

        write_chart(result, args.png)
        print(f"wrote {args.json} and {args.png}")
        return 0
    finally:
        parent.send(None)
        for p in PROCS:
            p.terminate()
            p.wait(timeout=10)
        upstream.terminate()
        loadgen.join(timeout=5)


def orjson_dumps(obj: object) -> bytes:
    import orjson

    return orjson.dumps(obj, option=orjson.OPT_INDENT_2)


if __name__ == "__main__":
    sys.exit(main())
