"""Detector cost: baseline points/s, and whether the full ensemble keeps up with 200 series.

    .venv/bin/python bench/detector.py [--series 200] [--points 1500] [--sample 8]

The baseline is timed on one long series (``update`` per point, likelihood stage included).
The ensemble (baseline + STL + LSTM) is timed on ``--sample`` series of ``--points``
points each at its online cost: ``update`` per point plus every fit it schedules, run
inline on this thread (in the engine those fits run in an executor, so this is the total
CPU a series needs). The load of ``--series`` series at 1 s resolution on one core is
then ``series * seconds-per-point``; below 1.0 it keeps up.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from switchgear.default_plugins.detectors import baseline, ensemble  # noqa: E402
from switchgear.detector.base import run_inline  # noqa: E402

# every member, lstm included (the default ensemble leaves the lstm out): the costliest case
FULL: dict[str, dict[str, object]] = {"baseline": {}, "stl": {}, "lstm": {}}


def series(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 100 + 10 * np.sin(2 * np.pi * t / 300) + rng.normal(0, 2, n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=200)
    ap.add_argument("--points", type=int, default=1500)
    ap.add_argument("--sample", type=int, default=8)
    ap.add_argument("--baseline-points", type=int, default=300_000)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)

    values = series(args.baseline_points, 0).tolist()
    det = baseline()
    t0 = time.perf_counter()
    for v in values:
        det.update(v)
    took = time.perf_counter() - t0
    print(f"baseline: {len(values) / took:,.0f} points/s ({took:.2f} s for {len(values):,} points)")

    # one untimed series first: torch and statsmodels import lazily on their first fit
    warm = ensemble(members=FULL)
    for v in series(700, 99).tolist():
        run_inline(warm, v)
    spent = 0.0
    points = 0
    for i in range(args.sample):
        ys = series(args.points, i + 1).tolist()
        det = ensemble(members=FULL)
        t0 = time.perf_counter()
        for v in ys:
            run_inline(det, v)
        spent += time.perf_counter() - t0
        points += len(ys)
    per_point = spent / points
    load = args.series * per_point
    verdict = "keeps up" if load < 1.0 else "does NOT keep up"
    print(
        f"ensemble: {per_point * 1e3:.3f} ms per point incl. fits; {args.series} series at 1 s "
        f"= {load:.2f} of one core ({verdict})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
