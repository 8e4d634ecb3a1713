"""Score every registered detector on a NAB corpus and print NAB scores per profile.

    .venv/bin/python bench/nab.py [--data ../shared/data/nab-dev] [--detectors baseline,stl]
                                  [--jobs 2] [--out DIR] [--split realAWS,artificial]
                                  [--online] [--calibrate | --no-calibrate]

Each file is scored causally with :func:`switchgear.detector.offline.score_series` (fits run
inline at the points the online engine would schedule them); the threshold is optimised
per detector and profile over the whole corpus, as NAB does. ``--out`` also writes NAB's
result files (``DIR/<detector>/<category>/<file>.csv``) for NAB's own scorer. ``--split``
also scores each group of files whose path starts with one of the given prefixes on its own
(its own threshold, standard profile): a check that what helps one kind of data does not
merely fit it. ``--online`` scores the gateway's online mode (as ``switchgear detect
--online``: built as the engine builds it, fed point by point; calibrated, as in the
gateway, unless ``--no-calibrate``); ``--calibrate`` calibrates the offline (NAB-mode)
detectors. ``bench/detector_loco.py`` validates choices category by category.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from switchgear.detector import nab  # noqa: E402
from switchgear.detector.offline import read_series, score_online, score_series  # noqa: E402
from switchgear.detector.registry import detector_factories, make_detector  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nab-dev"


def score_file(  # noqa: PLR0913 - one per command-line option
    detector: str, path: Path, out: Path | None, rel: str, online: bool, calibrate: bool | None
) -> np.ndarray:
    import torch

    torch.set_num_threads(1)
    frame = read_series(path)
    values = frame["value"].to_numpy()
    params: dict[str, object] = {} if calibrate is None else {"calibrate": calibrate}
    if online:
        scores = score_online(values, detector, params)
    else:
        scores = score_series(values, frame["timestamp"], make_detector(detector, None, **params))
    if out is not None:
        target = out / detector / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        frame.assign(anomaly_score=scores).to_csv(target, index=False)
    return scores


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--detectors", default=None, help="comma-separated (default: all registered)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--split", default=None, help="comma-separated path prefixes to score apart")
    ap.add_argument("--online", action="store_true", help="the gateway's online mode")
    ap.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="calibrated scores (the online mode's default)",
    )
    args = ap.parse_args(argv)
    labels = nab.load_labels(args.data)
    names = args.detectors.split(",") if args.detectors else sorted(detector_factories())
    print(
        f"{'detector':10s} {'profile':20s} {'score':>6s} {'threshold':>9s} {'tp':>3s} "
        f"{'fp':>4s} {'fn':>3s} {'seconds':>7s}"
    )
    with ProcessPoolExecutor(args.jobs) as pool:
        for name in names:
            t0 = time.perf_counter()
            futures = {
                rel: pool.submit(
                    score_file,
                    name,
                    args.data / "data" / rel,
                    args.out,
                    rel,
                    args.online,
                    args.calibrate,
                )
                for rel in labels
            }
            corpus = nab.Corpus()
            groups = {p: nab.Corpus() for p in (args.split.split(",") if args.split else [])}
            for rel, windows in labels.items():
                frame = read_series(args.data / "data" / rel)
                rows = nab.file_rows(frame["timestamp"], futures[rel].result(), windows)
                corpus.add(rows)
                for prefix, group in groups.items():
                    if rel.startswith(prefix):
                        group.add(rows)
            took = time.perf_counter() - t0
            for profile, r in nab.score_corpus(corpus).items():
                print(
                    f"{name:10s} {profile:20s} {r.score:6.1f} {r.threshold:9.4f} {r.tp:3d} "
                    f"{r.fp:4d} {r.fn:3d} {took:7.1f}",
                    flush=True,
                )
            for prefix, group in groups.items():
                r = nab.optimize(group, nab.PROFILES[0])
                print(
                    f"{name:10s} {'standard ' + prefix + '*':20s} {r.score:6.1f} "
                    f"{r.threshold:9.4f} {r.tp:3d} {r.fp:4d} {r.fn:3d}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
