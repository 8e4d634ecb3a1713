"""User-space instructions per request of the gateway and the bare pass-through (callgrind).

CPU time on a shared machine swings with whatever else runs; the number of instructions a
process executes for the same work hardly does. For each target (switchgear, the bare
aiohttp pass-through of ``bench/bare_proxy.py``, and with ``--compare DIR`` the gateway of
another checkout) this starts the fast upstream of ``bench/overhead.py``, the target under
``valgrind --tool=callgrind --instr-atstart=no``, sends a warm-up, switches instrumentation
on (``callgrind_control -i on``), sends ``--requests`` requests at ``--concurrency`` and
prints the instructions per request and the ratio against the bare pass-through. Kernel
time (socket reads and writes) is not counted, so the ratios are larger than CPU ratios.

    .venv/bin/python bench/instructions.py [--stream] [--concurrency 16] [--requests 2000]
        [--compare DIR]

Needs valgrind; each target takes about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import overhead as ov

WARM_UP = 300


async def _fixed(url: str, concurrency: int, n: int, stream: bool) -> None:
    import aiohttp
    import orjson

    body = orjson.dumps({**ov.BODY, "stream": stream})
    headers = {"Content-Type": "application/json"}
    left = [n]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                async with http.post(url, data=body, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"HTTP {r.status}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def _command(target: str, port: int, upstream: int, code: Path | None) -> list[str]:
    if target == "bare aiohttp":
        return [
            sys.executable,
            str(ov.HERE / "bare_proxy.py"),
            str(port),
            f"http://127.0.0.1:{upstream}",
        ]
    cfg = Path(tempfile.mkdtemp()) / "gateway.yaml"
    cfg.write_text(f'backends: [{{model: bench, url: "http://127.0.0.1:{upstream}/v1"}}]\n')
    cmd = [sys.executable, "-m", "switchgear.cli", "--log-level", "WARNING", "serve"]
    return cmd + ["--config", str(cfg), "--port", str(port)]


def measure(target: str, code: Path | None, upstream: int, args: argparse.Namespace) -> float:
    """Instructions per request of one target."""
    port = ov.free_port()
    out = Path(tempfile.mkdtemp()) / "callgrind.out"
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = str(code)
    proc = subprocess.Popen(
        [*valgrind, f"--callgrind-out-file={out}", *_command(target, port, upstream, code)],
        env=env,
        cwd=tempfile.gettempdir(),
        stderr=subprocess.DEVNULL,
    )
    try:
        ov.wait_port(port, 300)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        loop = ov.new_loop()
        loop.run_until_complete(_fixed(url, args.concurrency, WARM_UP, args.stream))
        control = ["callgrind_control", "-i"]
        subprocess.run([*control, "on", str(proc.pid)], check=True, capture_output=True)
        loop.run_until_complete(_fixed(url, args.concurrency, args.requests, args.stream))
        subprocess.run([*control, "off", str(proc.pid)], check=True, capture_output=True)
        loop.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    total = 0
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            total = max(total, int(line.split()[1]))
    return total / args.requests


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stream", action="store_true", help="streamed requests (32 chunks)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--compare", type=Path, help="also measure the gateway of this checkout")
    args = ap.parse_args()
    here = Path(__file__).resolve().parent.parent
    targets: dict[str, Path | None] = {"switchgear": here, "bare aiohttp": None}
    if args.compare is not None:
        targets[f"switchgear ({args.compare.name})"] = args.compare.resolve()
    ctx = mp.get_context("spawn")
    up_port = ov.free_port()
    upstream = ctx.Process(target=ov.run_upstream, args=(up_port,), daemon=True)
    upstream.start()
    try:
        ov.wait_port(up_port)
        got = {t: measure(t, code, up_port, args) for t, code in targets.items()}
    finally:
        upstream.terminate()
    kind = "stream" if args.stream else "non-stream"
    for t, n in got.items():
        ratio = n / got["bare aiohttp"]
        print(
            f"{kind} c={args.concurrency} {t:<22}{n / 1000:>9.0f}k instructions/request {ratio:5.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
