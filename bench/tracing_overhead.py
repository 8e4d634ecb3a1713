"""What tracing costs a request, against tracing off, in one run.

Processes: a fast OpenAI-compatible upstream, an OTLP/HTTP sink (answers every export 200
and counts the spans' bytes), three gateways (``switchgear serve``) in front of the upstream
— one with tracing off (the default), one with ``tracing.enabled`` exporting every trace
(``sample_ratio: 1``) to the sink, one sampling a tenth of the traces — and a load
generator. Rounds alternate between the
gateways, so drift on a shared machine hits both alike. Printed per scenario (non-streamed
chat at concurrency 1 and 32, streamed chat at 32): requests/s, p50 and p99 latency, the
gateway's CPU per request (its own process, so the exporter thread is included), and the
ratios to tracing off.

    .venv/bin/python bench/tracing_overhead.py [--seconds 2.0] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import cpu_seconds, free_port, pct, run_loadgen, run_upstream, wait_port  # noqa: E402


def run_sink(port: int) -> None:
    """An OTLP/HTTP endpoint that accepts every export (the collector's cost is not measured)."""
    from aiohttp import web

    async def export(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", export)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def gateway(cfg: Path, port: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "switchgear.cli", "--log-level", "WARNING", "serve"]
    return subprocess.Popen([*args, "--config", str(cfg), "--port", str(port)])


SCENARIOS = (("json c=1", 1, False), ("json c=32", 32, False), ("stream c=32", 32, True))


def _scenario(
    parent: Any,
    targets: dict[str, tuple[subprocess.Popen[bytes], str]],
    scenario: tuple[str, int, bool],
    rounds: int,
    seconds: float,
) -> None:
    """Alternating rounds of one scenario on every gateway; prints a row each, and ratios."""
    name, concurrency, stream = scenario
    stats: dict[str, dict[str, list[float]]] = {t: {"lat": [], "cpu": [], "n": []} for t in targets}
    for _ in range(rounds):
        for target, (proc, url) in targets.items():
            cpu0 = cpu_seconds(proc.pid)
            parent.send((url, concurrency, seconds, stream))
            lat = parent.recv()
            s = stats[target]
            s["lat"] += lat
            s["cpu"].append(cpu_seconds(proc.pid) - cpu0)
            s["n"].append(len(lat))
    per: dict[str, tuple[float, float, float]] = {}
    for target, s in stats.items():
        n = sum(s["n"])
        rps = n / (rounds * seconds)
        cpu_ms = sum(s["cpu"]) / max(n, 1) * 1000
        p50 = pct(s["lat"], 0.5)
        per[target] = (rps, p50, cpu_ms)
        print(
            f"{name:<12} {target:<8} {rps:>8.0f} {p50:>8.2f} "
            f"{pct(s['lat'], 0.99):>8.2f} {cpu_ms:>14.3f}"
        )
    r0, l0, c0 = per["off"]
    for target in ("traced", "1/10"):
        r1, l1, c1 = per[target]
        print(
            f"{name:<12} {target}/off: rps x{r1 / r0:.2f}, p50 x{l1 / l0:.2f}, "
            f"gateway CPU per request x{c1 / c0:.2f} ({c1 - c0:+.3f} ms)"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="length of one round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per gateway and scenario")
    ap.add_argument("--quick", action="store_true", help="0.5 s rounds, one round each")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.rounds = 0.5, 1

    ctx = mp.get_context("spawn")
    tmp = Path(tempfile.mkdtemp())
    up_port, sink_port, off_port, on_port, tenth_port = (free_port() for _ in range(5))
    upstream = ctx.Process(target=run_upstream, args=(up_port,), daemon=True)
    sink = ctx.Process(target=run_sink, args=(sink_port,), daemon=True)
    upstream.start()
    sink.start()
    base = f'backends: [{{model: bench, url: "http://127.0.0.1:{up_port}/v1"}}]\n'
    (tmp / "off.yaml").write_text(base)
    traced = f'tracing: {{enabled: true, endpoint: "http://127.0.0.1:{sink_port}/v1/traces"'
    (tmp / "on.yaml").write_text(base + traced + ", export_delay_ms: 500}\n")
    (tmp / "tenth.yaml").write_text(base + traced + ", export_delay_ms: 500, sample_ratio: 0.1}\n")
    off, on = gateway(tmp / "off.yaml", off_port), gateway(tmp / "on.yaml", on_port)
    tenth = gateway(tmp / "tenth.yaml", tenth_port)
    parent, child = ctx.Pipe()
    loadgen = ctx.Process(target=run_loadgen, args=(child,), daemon=True)
    loadgen.start()
    try:
        for port in (up_port, sink_port, off_port, on_port, tenth_port):
            wait_port(port)
        targets = {
            "off": (off, f"http://127.0.0.1:{off_port}/v1/chat/completions"),
            "traced": (on, f"http://127.0.0.1:{on_port}/v1/chat/completions"),
            "1/10": (tenth, f"http://127.0.0.1:{tenth_port}/v1/chat/completions"),
        }
        for _proc, url in targets.values():  # warm-up: connections, first exports
            parent.send((url, 4, 0.5, False))
            parent.recv()
        print(
            f"{'scenario':<12} {'tracing':<8} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'gw CPU ms/req':>14}"
        )
        for scenario in SCENARIOS:
            _scenario(parent, targets, scenario, args.rounds, args.seconds)
    finally:
        parent.send(None)
        for proc in (off, on, tenth):
            proc.terminate()
            proc.wait(timeout=15)
        upstream.terminate()
        sink.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
