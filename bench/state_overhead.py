"""What shared state in Redis costs a request, against the in-process default, in one run.

Processes: a fast OpenAI-compatible upstream, a real ``redis-server`` on a free port (no
persistence), two gateways (``switchgear serve``) in front of the upstream with the same
per-key limits (requests and tokens per minute, high enough never to refuse) — one on
in-process state, one with ``state.redis_url`` — and a load generator. Rounds alternate
between the two gateways, so drift on a shared machine hits both alike. Printed per
scenario: requests/s, p50 and p99 latency, the gateway's CPU per request (from
/proc/<pid>/stat during its rounds only; the median over rounds), redis-server's CPU per
request (the same way), and the Redis − in-process differences. Each request costs the Redis gateway one rate-limit check
and one settlement (two Lua scripts, batched per event-loop turn).

    .venv/bin/python bench/state_overhead.py [--seconds 2.0] [--rounds 3] [--unix]
        [--compare-tree DIR]

``--unix`` adds a gateway that reaches the same Redis over a unix socket (``unix://``): the
difference to the TCP one is what loopback TCP itself costs. ``--compare-tree DIR`` adds a
gateway on Redis run from another source tree (``DIR`` holding a ``switchgear`` package,
e.g. an earlier commit's ``git archive``). Every gateway runs in the same interleaved rounds,
so versions and transports are compared under the same load.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import cpu_seconds, free_port, pct, run_loadgen, run_upstream, wait_port  # noqa: E402

LIMITS = "rate_limits: {requests_per_minute: 100000000, tokens_per_minute: 1000000000}\n"


def gateway(cfg: Path, port: int, tree: str | None = None) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "switchgear.cli", "--log-level", "WARNING", "serve"]
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = tree
    return subprocess.Popen([*args, "--config", str(cfg), "--port", str(port)], env=env)


def run_scenario(
    name: str,
    concurrency: int,
    targets: dict[str, tuple[subprocess.Popen[bytes], str]],
    parent: Connection,
    redis: subprocess.Popen[bytes],
    args: argparse.Namespace,
) -> None:
    """Interleaved rounds of one scenario against each target; prints a row per target."""
    stats: dict[str, dict[str, list[float]]] = {
        t: {"lat": [], "cpu": [], "redis": [], "n": [], "secs": []} for t in targets
    }
    for _ in range(args.rounds):
        for target, (proc, url) in targets.items():
            cpu0, r0 = cpu_seconds(proc.pid), cpu_seconds(redis.pid)
            parent.send((url, concurrency, args.seconds, False))
            lat = parent.recv()
            s = stats[target]
            s["lat"] += lat
            s["cpu"].append(cpu_seconds(proc.pid) - cpu0)
            s["redis"].append(cpu_seconds(redis.pid) - r0)
            s["n"].append(len(lat))
    per: dict[str, tuple[float, float, float]] = {}
    for target, s in stats.items():
        n = sum(s["n"])
        # The median over rounds of each round's CPU per request: a neighbour's burst on a
        # shared machine inflates a round or two, not the median.
        cpu_ms = statistics.median(c / k for c, k in zip(s["cpu"], s["n"], strict=True)) * 1000
        redis_ms = statistics.median(c / k for c, k in zip(s["redis"], s["n"], strict=True)) * 1000
        p50 = pct(s["lat"], 0.5)
        per[target] = (cpu_ms, p50, redis_ms)
        print(
            f"{name:<10} {target:<11} {n / (args.rounds * args.seconds):>8.0f} "
            f"{p50:>8.2f} {pct(s['lat'], 0.99):>8.2f} {cpu_ms:>14.3f} {redis_ms:>17.3f}"
        )
    for target in per:
        if target == "in-process":
            continue
        d_cpu = per[target][0] - per["in-process"][0]
        d_p50 = per[target][1] - per["in-process"][1]
        print(
            f"{name:<10} {target + ' − in-process':<22} gateway CPU {d_cpu:+.3f} ms/req, "
            f"p50 {d_p50:+.3f} ms, redis-server {per[target][2]:.3f} ms/req "
            f"(ratio gateway CPU {per[target][0] / per['in-process'][0]:.2f})"
        )


def extra_gateways(
    args: argparse.Namespace, base: str, tmp: Path, redis_port: int
) -> dict[str, tuple[subprocess.Popen[bytes], int]]:
    """The ``--unix`` and ``--compare-tree`` gateways, on the same Redis (own key prefixes)."""
    extra: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    if args.unix:
        url = f"unix://{tmp / 'redis.sock'}"
        (tmp / "unix.yaml").write_text(base + f'state: {{redis_url: "{url}", key_prefix: unix}}\n')
        wait_port(redis_port)  # the socket exists once Redis listens
        port = free_port()
        extra["redis-unix"] = (gateway(tmp / "unix.yaml", port), port)
    if args.compare_tree:
        url = f"redis://127.0.0.1:{redis_port}/0"
        (tmp / "compare.yaml").write_text(
            base + f'state: {{redis_url: "{url}", key_prefix: cmp}}\n'
        )
        port = free_port()
        extra["redis@tree"] = (gateway(tmp / "compare.yaml", port, args.compare_tree), port)
    return extra


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="length of one round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per gateway and scenario")
    ap.add_argument("--compare-tree", help="source tree of a second Redis gateway to compare")
    ap.add_argument("--unix", action="store_true", help="add a gateway on Redis's unix socket")
    args = ap.parse_args()
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        print("redis-server is not installed (make test installs it)", file=sys.stderr)
        return 2

    ctx = mp.get_context("spawn")
    tmp = Path(tempfile.mkdtemp())
    up_port, redis_port, local_port, shared_port = (free_port() for _ in range(4))
    upstream = ctx.Process(target=run_upstream, args=(up_port,), daemon=True)
    upstream.start()
    sock = tmp / "redis.sock"
    redis = subprocess.Popen(
        [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no", "--unixsocket", str(sock), "--unixsocketperm", "700"],
        stdout=subprocess.DEVNULL,
    )
    base = f'backends: [{{model: bench, url: "http://127.0.0.1:{up_port}/v1"}}]\n' + LIMITS
    (tmp / "local.yaml").write_text(base)
    (tmp / "redis.yaml").write_text(
        base + f'state: {{redis_url: "redis://127.0.0.1:{redis_port}/0"}}\n'
    )
    local = gateway(tmp / "local.yaml", local_port)
    shared = gateway(tmp / "redis.yaml", shared_port)
    extra = extra_gateways(args, base, tmp, redis_port)
    parent, child = ctx.Pipe()
    loadgen = ctx.Process(target=run_loadgen, args=(child,), daemon=True)
    loadgen.start()
    try:
        for port in (up_port, redis_port, local_port, shared_port):
            wait_port(port)
        targets = {
            "in-process": (local, f"http://127.0.0.1:{local_port}/v1/chat/completions"),
            "redis": (shared, f"http://127.0.0.1:{shared_port}/v1/chat/completions"),
        }
        for target, (proc, port) in extra.items():
            wait_port(port)
            targets[target] = (proc, f"http://127.0.0.1:{port}/v1/chat/completions")
        for _proc, url in targets.values():  # warm-up: connections, script loading
            parent.send((url, 4, 0.5, False))
            parent.recv()
        print(
            f"{'scenario':<10} {'state':<11} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'gw CPU ms/req':>14} {'redis CPU ms/req':>17}"
        )
        for name, concurrency in (("c=1", 1), ("c=32", 32)):
            run_scenario(name, concurrency, targets, parent, redis, args)
    finally:
        parent.send(None)
        for proc in (local, shared, redis, *(p for p, _ in extra.values())):
            proc.terminate()
            proc.wait(timeout=15)
        upstream.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
