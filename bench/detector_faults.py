"""Fault benchmark of the detector on real parts, with the shipped config.

    .venv/bin/python bench/detector_faults.py --quick     # about 8 minutes
    .venv/bin/python bench/detector_faults.py             # long stretches (about 20 minutes)
    .venv/bin/python bench/detector_faults.py --clean 30  # 30 minutes of clean traffic only

``--clean N`` runs no fault at all: N minutes of clean, bursty, diurnal-shaped traffic next to
the CPU-stress neighbour, counted from the workers' cold start (their model load and first
requests are in it), with garbage-collection pauses of the healthy workers (``GC_PAUSES``:
tiny-1 stalls 300 ms every 47 s, tiny-2 200 ms every 61 s, through ``/admin/faults``), and
reports every action the gateway took as a false one.

Started here, on loopback: a tiny model (``switchgear model make-tiny``), three
``switchgear worker`` processes (two replicas of ``tiny``, one ``tiny-fb``), the gateway
(``switchgear serve`` with ``config/gateway-detector.yaml`` as shipped, only ports, URLs and
the scaler's worker config substituted), a CPU-stress neighbour (one busy process), and an
open-loop load of 5 requests/s to ``tiny``. Faults go through each worker's
``POST /admin/faults``. Slowdowns are delays relative to the clean median latency measured
in the first stretch (``(k - 1) x median``): the outlier rule also wants 100 ms of excess.

Per fault it prints the first action the gateway took (``GET /admin/actions``) on the
expected target, its delay from the fault's start, and the failed requests; on the clean
stretches, the false actions per hour. Two baselines are scored on the same request log
(as the client saw it, so errors the gateway retried away are not in it): a static alert,
p95 of a 10 s window above ``K`` x the first stretch's p95 (LiteLLM-style), and ejection of a
backend after 5 consecutive 5xx answers from it (Envoy-style).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-bench-admin"
K = 3.0  # static alert: p95 above K x the first stretch's p95
CONSECUTIVE = 5  # Envoy's consecutive_5xx
BODY = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
ACTING = {"eject", "fallback", "scale_up", "scale_down", "restart", "alert"}


@dataclass
class Req:
    start: float
    end: float
    status: int
    backend: str


@dataclass
class Stretch:
    name: str
    seconds: float
    faults: dict[str, dict[str, float]]  # worker -> faults to set at the start
    target: str | None  # what an action should name; None: a clean stretch
    rps: float = 5.0
    ramp_to: float | None = None  # rises linearly to this over ``ramp_s``, then holds
    ramp_s: float = 0.0
    want: str | None = None  # the action the issue asks for; reported first when taken


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def schedule(quick: bool, median: float) -> list[Stretch]:
    f, r = (12.0, 8.0) if quick else (60.0, 40.0)

    def slow(k: float) -> dict[str, float]:
        return {"delay_ms": (k - 1) * median * 1000}

    clean: dict[str, dict[str, float]] = {"tiny-1": {}, "tiny-2": {}}
    return [
        Stretch("2x slower, one replica", f, {"tiny-1": slow(2)}, "tiny-1"),
        Stretch("recover", r, clean, None),
        Stretch("3x slower, one replica", f, {"tiny-1": slow(3)}, "tiny-1"),
        Stretch("recover", r, clean, None),
        Stretch("10x slower, one replica", f, {"tiny-1": slow(10)}, "tiny-1"),
        Stretch("recover", r, clean, None),
        Stretch(
            "all replicas 10x",
            2 * f,
            {"tiny-1": slow(10), "tiny-2": slow(10)},
            "tiny",
            want="fallback",
        ),
        Stretch("recover", r, clean, None),
        Stretch("30% errors, one replica", f, {"tiny-1": {"error_rate": 0.3}}, "tiny-1"),
        Stretch("recover", r, clean, None),
        # the leak rule needs its 60 s window of growth (and a scrape every 5 s)
        Stretch(
            "leak 5 MB/s, one replica",
            max(2 * f, 90.0),
            {"tiny-1": {"leak_mb_per_s": 5}},
            "tiny-1",
            want="restart",
        ),  # fmt: skip
        Stretch("recover", r, clean, None),
        # past the two replicas' capacity (2 x rps_per_replica = 20) for longer than the
        # scaler's sustain_s (30 s); the scale_up is recorded once the new worker is ready,
        # which on a busy host takes most of a minute: the load is held for 60 s
        Stretch(
            "load ramp 5 -> 25 rps",
            120.0 if quick else 180.0,
            clean,
            "tiny",
            ramp_to=25.0,
            ramp_s=60.0 if quick else 120.0,
            want="scale_up",
        ),  # fmt: skip
        Stretch("clean", 60.0 if quick else 300.0, clean, None),
    ]


@contextlib.contextmanager
def processes(tmp: Path, quick: bool) -> Iterator[dict[str, str]]:
    py, env = sys.executable, {**os.environ, "PYTHONPATH": str(ROOT), "SWITCHGEAR_ADMIN_KEY": KEY}
    cli = [py, "-m", "switchgear.cli"]
    subprocess.run([*cli, "model", "make-tiny", str(tmp / "tiny"), "--seed", "0"], env=env,
                   check=True, capture_output=True)  # fmt: skip
    wcfg = (ROOT / "config/worker.yaml").read_text().replace("models/tiny", str(tmp / "tiny"))
    wcfg = wcfg.replace("watch_config: true", "watch_config: false")
    # one torch thread per worker: three workers and a neighbour share two cores
    wcfg = wcfg.replace("  max_batch_size:", "  torch_threads: 1\n  max_batch_size:")
    (tmp / "worker.yaml").write_text(wcfg)
    ports = {"tiny-1": free_port(), "tiny-2": free_port(), "tiny-fb-1": free_port()}
    gw_port = free_port()
    gcfg = (ROOT / "config/gateway-detector.yaml").read_text()
    gcfg = gcfg.replace("port: 8080", f"port: {gw_port}").replace(
        "config/worker.yaml", str(tmp / "worker.yaml")
    )
    for i, port in enumerate(ports.values()):
        gcfg = gcfg.replace(f"127.0.0.1:900{i + 1}", f"127.0.0.1:{port}")
    (tmp / "gateway.yaml").write_text(gcfg)
    procs = []
    try:
        for bid, port in ports.items():
            name = "tiny-fb" if bid.startswith("tiny-fb") else "tiny"
            cmd = [
                *cli,
                "worker",
                "-c",
                str(tmp / "worker.yaml"),
                "--port",
                str(port),
                "--name",
                name,
            ]
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                          stderr=open(tmp / f"{bid}.log", "w")))  # fmt: skip
        procs.append(subprocess.Popen([*cli, "serve", "-c", str(tmp / "gateway.yaml")], env=env,
                                      stdout=subprocess.DEVNULL, stderr=open(tmp / "gw.log", "w")))  # fmt: skip
        procs.append(subprocess.Popen([py, "-c", "while True: pass"]))  # the CPU-stress neighbour
        urls = {bid: f"http://127.0.0.1:{p}" for bid, p in ports.items()}
        yield {"gateway": f"http://127.0.0.1:{gw_port}", **urls}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


async def ready(http: aiohttp.ClientSession, urls: dict[str, str]) -> None:
    checks = [u + "/health" for k, u in urls.items() if k != "gateway"] + [
        urls["gateway"] + "/readyz"
    ]
    deadline = time.monotonic() + 180
    for url in checks:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as resp:
                    if resp.status == 200 and (await resp.json()).get("status") == "ready":
                        break
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} not ready within 180 s")
            await asyncio.sleep(0.5)


class Load:
    """Open-loop requests at a set rate; every answer goes into ``log``."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url, self.rps = http, url + "/v1/chat/completions", 5.0
        self.log: list[Req] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def one(self) -> None:
        t0, status, backend = time.time(), 0, ""
        try:
            async with self.http.post(self.url, json=BODY, timeout=aiohttp.ClientTimeout(60)) as r:
                await r.read()
                status, backend = r.status, r.headers.get("x-switchgear-backend", "").split(";")[0]
        except (aiohttp.ClientError, TimeoutError):
            pass
        self.log.append(Req(t0, time.time(), status, backend))

    async def run(self) -> None:
        nxt = time.monotonic()
        while True:
            nxt += 1.0 / self.rps
            task = asyncio.create_task(self.one())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))


def p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))] if values else 0.0


def static_alerts(log: list[Req], t0: float, t1: float, level: float) -> list[float]:
    """Times (each second) where the p95 of the last 10 s of answers exceeds K x level."""
    out, t = [], t0
    while t < t1:
        window = [r.end - r.start for r in log if t - 10 <= r.end < t]
        if len(window) >= 5 and p95(window) > K * level:
            out.append(t)
        t += 1.0
    return out


def envoy_ejections(log: list[Req]) -> list[tuple[float, str]]:
    runs: dict[str, int] = {}
    out = []
    for r in sorted(log, key=lambda r: r.end):
        if not r.backend:
            continue
        runs[r.backend] = runs.get(r.backend, 0) + 1 if r.status >= 500 else 0
        if runs[r.backend] == CONSECUTIVE:
            out.append((r.end, r.backend))
    return out


async def set_faults(
    http: aiohttp.ClientSession, urls: dict[str, str], faults: dict[str, dict[str, float]]
) -> None:
    for bid, f in faults.items():
        body = dict(f)  # what is left out goes back to 0
        async with http.post(urls[bid] + "/admin/faults", json=body,
                             headers={"Authorization": f"Bearer {KEY}"}) as resp:  # fmt: skip
            resp.raise_for_status()


async def settled(http: aiohttp.ClientSession, gateway: str, limit_s: float) -> float:
    """Wait (up to ``limit_s``) until every ejection has its readmission and every fallback
    its restore, so that the next fault starts from a fully admitted model; the seconds waited."""
    t0 = time.time()
    while time.time() - t0 < limit_s:
        async with http.get(
            gateway + "/admin/actions", headers={"Authorization": f"Bearer {KEY}"}
        ) as r:
            out: dict[str, int] = {}
            # /admin/actions lists the newest first: count them in the order they happened
            for a in sorted((await r.json())["actions"], key=lambda a: float(a["ts"])):
                step = {"eject": 1, "readmit": -1, "fallback": 1, "restore": -1}.get(a["kind"], 0)
                out[a["target"]] = max(0, out.get(a["target"], 0) + step)
        if not any(out.values()):
            break
        await asyncio.sleep(1.0)  # the poll interval
    return time.time() - t0


def first(times: list[float], start: float, end: float) -> float | None:
    return next((t - start for t in sorted(times) if start <= t < end), None)


def fmt(v: float | None) -> str:
    return "missed" if v is None else f"{v:.1f} s"


def report(stretches: list[tuple[Stretch, float, float]], log: list[Req], actions: list[dict[str, object]],
           level: float, clean_s: float, total_s: float) -> None:  # fmt: skip
    alerts = static_alerts(
        log, min(s for _, s, _ in stretches), max(e for _, _, e in stretches), level
    )
    ejections = envoy_ejections(log)
    print(
        f"| fault | switchgear action | delay | failed requests | static p95 > {K:g}x | 5 consecutive 5xx |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    false = {"switchgear": 0, "static": 0, "envoy": 0}
    for st, start, end in stretches:
        in_st = [a for a in actions if start <= float(a["ts"]) < end and a["kind"] in ACTING]  # type: ignore[arg-type]
        failed = sum(1 for r in log if start <= r.start < end and r.status != 200)
        if st.target is None:
            if st.name == "clean":
                false["switchgear"] += len(in_st)
                false["static"] += len([t for t in alerts if start <= t < end])
                false["envoy"] += len([t for t, _ in ejections if start <= t < end])
            continue
        hit = [a for a in in_st if a["target"] == st.target or st.target == "tiny"]
        hit.sort(key=lambda a: a["kind"] != st.want)  # stable: the wanted action first
        act = f"{hit[0]['kind']} {hit[0]['target']}" if hit else "none"
        delay = float(hit[0]["ts"]) - start if hit else None  # type: ignore[arg-type]
        env = first([t for t, b in ejections if b == st.target or st.target == "tiny"], start, end)
        print(
            f"| {st.name} | {act} | {fmt(delay)} | {failed} | {fmt(first(alerts, start, end))} | {fmt(env)} |"
        )
    hours = clean_s / 3600
    print(f"\nfalse actions per hour on the clean stretches ({clean_s:.0f} s): " + ", ".join(
        f"{k} {v / hours:.0f} ({v})" for k, v in false.items()))  # fmt: skip
    print(f"run: {total_s:.0f} s, {len(log)} requests, {sum(r.status != 200 for r in log)} failed")
    for a in actions:  # every action, in the stretch it fell in
        ts = float(a["ts"])  # type: ignore[arg-type]
        at = next(((st, s) for st, s, e in stretches if s <= ts < e), None)
        where = f"{at[0].name} +{ts - at[1]:.1f} s" if at else "between stretches"
        print(f"  {where}: {a['kind']} {a['target']} ({a['reason']})")


def diurnal(t: float, period_s: float, rng: random.Random, burst_until: list[float]) -> float:
    """Requests/s at ``t`` s into a clean run: 2..8 rps over a compressed day of ``period_s``,
    plus a burst of 2.5x for 5 s at random moments (about one a minute)."""
    base = 5.0 + 3.0 * math.sin(2 * math.pi * t / period_s)
    if t >= burst_until[0] and rng.random() < 1 / 60:
        burst_until[0] = t + 5.0
    return base * (2.5 if t < burst_until[0] else 1.0)


#: Garbage-collection pauses of the healthy workers on a clean run: each stalls for the time
#: given at its own period, so that now and then both stall together.
GC_PAUSES = {
    "tiny-1": {"pause_ms": 300.0, "pause_every_s": 47.0},
    "tiny-2": {"pause_ms": 200.0, "pause_every_s": 61.0},
}


def clean_schedule(minutes: float) -> list[Stretch]:
    return [Stretch("clean", minutes * 60.0, GC_PAUSES, None)]


def dump(path: Path, stretches: list[tuple[Stretch, float, float]], log: list[Req],
         actions: list[dict[str, object]]) -> None:  # fmt: skip
    """The run as JSON, for analysis (``--dump``): stretches, every request, every action."""
    body = {
        "stretches": [
            {"name": st.name, "target": st.target, "start": s, "end": e} for st, s, e in stretches
        ],  # fmt: skip
        "requests": [[r.start, r.end, r.status, r.backend] for r in log],
        "actions": actions,
    }
    path.write_text(json.dumps(body))


async def run(quick: bool, clean_minutes: float | None = None, out: Path | None = None) -> int:
    t_begin = time.time()
    with tempfile.TemporaryDirectory() as d, processes(Path(d), quick) as urls:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            await ready(http, urls)
            load = Load(http, urls["gateway"])
            loader = asyncio.create_task(load.run())
            clean0 = 30.0 if quick else 120.0
            start = time.time()
            await asyncio.sleep(clean0)
            first_log = [r for r in load.log if r.status == 200]
            median = statistics.median(r.end - r.start for r in first_log)
            level = p95([r.end - r.start for r in first_log])
            print(f"clean median latency {median * 1000:.0f} ms, p95 {level * 1000:.0f} ms")
            done: list[tuple[Stretch, float, float]] = [
                (Stretch("clean", clean0, {}, None), start, time.time())
            ]
            plan = (
                schedule(quick, median) if clean_minutes is None else clean_schedule(clean_minutes)
            )
            rng, burst_until = random.Random(0), [0.0]
            for st in plan:
                s0 = time.time()
                await set_faults(http, urls, st.faults)
                steps = int(st.seconds)
                for i in range(steps):
                    if clean_minutes is not None:  # two compressed days in the run
                        load.rps = diurnal(i, st.seconds / 2, rng, burst_until)
                    elif st.ramp_to is not None:
                        up = min(1.0, (i + 1) / max(1.0, st.ramp_s))
                        load.rps = st.rps + (st.ramp_to - st.rps) * up
                    await asyncio.sleep(1.0)
                load.rps = 5.0
                done.append((st, s0, time.time()))
                if st.name == "recover":
                    waited = await settled(http, urls["gateway"], 120.0)
                    if waited >= 1.0:
                        print(f"waited {waited:.0f} s for readmission after {st.name}")
            loader.cancel()
            await asyncio.gather(loader, return_exceptions=True)
            await asyncio.gather(*load._tasks, return_exceptions=True)
            async with http.get(
                urls["gateway"] + "/admin/actions", headers={"Authorization": f"Bearer {KEY}"}
            ) as r:
                actions = (await r.json())["actions"]
    clean_s = sum(e - s for st, s, e in done if st.name == "clean")
    report(done, load.log, actions, level, clean_s, time.time() - t_begin)
    if out is not None:
        dump(out, done, load.log, actions)
    if clean_minutes is not None:  # every action of the run is a false one, cold start included
        acting = [a for a in actions if a["kind"] in ACTING]
        print(f"clean run: {len(acting)} actions from the workers' cold start on "
              f"({len(acting) / ((time.time() - t_begin) / 3600):.1f} per hour)")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short stretches (about 8 minutes)")
    ap.add_argument("--clean", type=float, metavar="MINUTES", help="clean traffic only, no fault")
    ap.add_argument("--dump", type=Path, metavar="FILE", help="write the run as JSON")
    args = ap.parse_args(argv)
    return asyncio.run(run(args.quick, args.clean, args.dump))


if __name__ == "__main__":
    sys.exit(main())
