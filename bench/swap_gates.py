"""How often the latency gate refuses, with and without a CPU-stress neighbour.

    .venv/bin/python bench/swap_gates.py [--tries 20] [--layers 2,4,8,16]

Builds tiny models (2 layers, hidden 64, seeded) with more and more layers, then runs the
latency gate of a hot swap from the 2-layer model to each, ``--tries`` times, alone and with
one process spinning on every core. Prints, per candidate: the refusal rate, the median
measured ratio and lower bound, the median gate time, and the rounds it needed. The same
model must never be refused; a clearly slower one always.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tries", type=int, default=20)
    ap.add_argument("--layers", default="2,4,8,16")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import torch

    from switchgear.plugins.manager import make_plugin_manager
    from switchgear.settings.worker import GateSettings, ModelSpec
    from switchgear.worker.app import register_gates
    from switchgear.worker.gates import Subject, SwapContext
    from switchgear.worker.gates.latency import latency_gate
    from switchgear.worker.loading import load_bundle
    from switchgear.worker.tiny import TinySpec, make_tiny

    torch.set_num_threads(1)
    pm = make_plugin_manager(
        load_entrypoints=False, builtins=["switchgear.default_plugins.quantization"]
    )
    register_gates(pm)
    gates = GateSettings()
    root = Path(tempfile.mkdtemp(prefix="swap-bench-"))

    def subject(layers: int) -> Subject:
        path = root / f"tiny-{layers}"
        if not (path / "config.json").exists():
            make_tiny(path, TinySpec(seed=0, layers=layers))
        b = load_bundle(ModelSpec(model_name_or_path=str(path)), pm)
        return Subject(b.name, b.tokenizer, b)

    current = subject(2)
    candidates = {n: subject(n) for n in (int(x) for x in args.layers.split(","))}
    print(
        f"latency gate: tolerance +{gates.latency_tolerance:.0%}, {len(gates.probes)} probes, "
        f"{gates.latency_repeats}..{gates.latency_max_rounds} rounds, {args.tries} tries"
    )
    print(
        f"{'neighbour':<10} {'layers':>6} {'refused':>8} {'ratio':>7} {'lower':>7} "
        f"{'gate s':>7} {'rounds':>6}"
    )
    for stress in (False, True):
        procs = []
        if stress:
            procs = [
                subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(os.cpu_count() or 2)
            ]
        try:
            for layers, cand in candidates.items():
                rows = []
                for _ in range(args.tries):
                    started = time.perf_counter()
                    r = latency_gate(current, cand, SwapContext(gates=gates))
                    rows.append((r, time.perf_counter() - started))
                refused = sum(not r.passed for r, _ in rows)
                med = statistics.median
                print(
                    f"{'stress' if stress else 'none':<10} {layers:>6} "
                    f"{refused:>3}/{args.tries:<4} "
                    f"{med(r.data['ratio'] for r, _ in rows):>7.3f} "
                    f"{med(r.data['lower'] for r, _ in rows):>7.3f} "
                    f"{med(s for _, s in rows):>7.2f} "
                    f"{med(r.data['rounds'] for r, _ in rows):>6.0f}"
                )
        finally:
            for p in procs:
                p.kill()
                p.wait()


if __name__ == "__main__":
    main()
