"""Leave-one-category-out NAB validation of the detectors (standard profile).

    .venv/bin/python bench/detector_loco.py [--data ../shared/data/nab-dev] [--jobs 2]
                                            [--quick] [--candidates a,b] [--cache DIR]

For each category (folder) of the corpus, every tuning choice — which candidate (detector,
ensemble members, offline or online mode) and its threshold — is made on the *other*
categories, and the held-out category is scored with it. Per candidate the threshold is
the one that maximises the standard NAB score on the other categories; "chosen" picks, per
held-out category, the offline candidate whose score on the other categories is best, and
"chosen (online)" the same among the online candidates. The pooled figure adds the raw
held-out scores of every category and normalises them over all windows (a category
without windows, such as artificialNoAnomaly, has no normalised score of its own: its
column is the raw cost of its false positives and their count). "in-sample" is NAB's own
protocol, one threshold optimised on the whole corpus, for comparison; "gap" is in-sample
minus LOCO pooled, what choosing on the scored data itself is worth.

No labels are seen at detection time and no parameter is per file: each candidate is one
configuration for every series. Scores are cached per candidate and file under ``--cache``
(keyed by the detector code, so an edit invalidates them). ``--quick`` runs the fast
candidates only (baseline offline and online, with and without calibration). ``--cut N``
scores a corpus of short series instead: every file's first and last N rows (its windows
that start inside, clipped), written under ``--cache``.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from switchgear.detector import nab  # noqa: E402
from switchgear.detector.offline import read_series, score_online, score_series  # noqa: E402
from switchgear.detector.registry import make_detector  # noqa: E402

DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "nab-dev"
STANDARD = nab.PROFILES[0]


@dataclass(frozen=True)
class Candidate:
    name: str
    detector: str
    online: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        return f"{self.detector}|{self.online}|{sorted(self.params.items())!r}"


CAL = {"calibrate": True}
RAW = {"calibrate": False}
S10 = {"likelihood": {"short": 10}}
C3 = {"cycles": 3}
B_S_L: dict[str, dict[str, Any]] = {"baseline": {}, "stl": {}, "lstm": {}}
CANDIDATES = (
    Candidate("baseline", "baseline"),
    Candidate("stl", "stl"),
    Candidate("lstm", "lstm"),
    Candidate("ensemble", "ensemble"),  # the default members: baseline and stl
    Candidate("ens-short10", "ensemble", params=S10),  # the likelihood's previous average
    Candidate("ens-short20", "ensemble", params={"likelihood": {"short": 20}}),
    Candidate("ens-b+s+l", "ensemble", params={"members": B_S_L}),
    Candidate("ens-max0", "ensemble", params={"max_weight": 0.0}),
    # the previous default: a season only once the window holds three cycles of it
    Candidate("stl-3cycles", "stl", params={"cycles": 3}),
    Candidate("ens-3cycles", "ensemble", params={"members": {"baseline": {}, "stl": C3}}),
    Candidate("baseline+cal", "baseline", params=CAL),
    Candidate("ensemble+cal", "ensemble", params=CAL),
    # the online mode is calibrated by default (the gateway's engine builds these)
    Candidate("on-baseline", "baseline", online=True),
    Candidate("on-baseline-raw", "baseline", online=True, params=RAW),
    Candidate("on-baseline-s20", "baseline", True, {"calibrate": {"short": 20}}),
    Candidate("on-baseline-w3k", "baseline", True, {"calibrate": {"window": 3000}}),
    Candidate("on-stl", "stl", online=True),
    Candidate("on-ensemble", "ensemble", online=True),
    Candidate("on-ensemble-raw", "ensemble", online=True, params=RAW),
)
QUICK = ("baseline", "baseline+cal", "on-baseline", "on-baseline-raw")


def code_hash() -> str:
    """The detector code's hash (an edit of any detector module invalidates the cache)."""
    h = hashlib.sha256()
    files = sorted((ROOT / "switchgear" / "detector").glob("*.py"))
    for path in [*files, ROOT / "switchgear" / "default_plugins" / "detectors.py"]:
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def score_file(cand: Candidate, path: Path, cache: Path) -> np.ndarray:
    import torch

    torch.set_num_threads(1)
    key = f"{cand.key()}|{path}"
    target = cache / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".npy")
    if target.exists():
        return np.asarray(np.load(target))
    values = read_series(path)["value"].to_numpy()
    if cand.online:
        scores = score_online(values, cand.detector, dict(cand.params))
    else:
        scores = score_series(values, None, make_detector(cand.detector, **cand.params))
    cache.mkdir(parents=True, exist_ok=True)
    np.save(target, scores)
    return scores


def corpora(
    labels: Mapping[str, list[list[str]]], scores: Mapping[str, np.ndarray], data: Path
) -> dict[str, nab.Corpus]:
    """One corpus per category."""
    out: dict[str, nab.Corpus] = {}
    for rel, windows in labels.items():
        frame = read_series(data / "data" / rel)
        rows = nab.file_rows(frame["timestamp"], scores[rel], windows)
        out.setdefault(rel.split("/")[0], nab.Corpus()).add(rows)
    return out


def merged(parts: Mapping[str, nab.Corpus], skip: str | None = None) -> nab.Corpus:
    c = nab.Corpus()
    for name, part in parts.items():
        if name != skip:
            c.extend(part)
    return c


@dataclass
class Fold:
    train: float  # standard score on the other categories, at their best threshold
    threshold: float
    held: nab.ProfileResult  # the held-out category at that threshold


def folds(parts: Mapping[str, nab.Corpus]) -> dict[str, Fold]:
    out = {}
    for cat in parts:
        train = nab.optimize(merged(parts, cat), STANDARD)
        out[cat] = Fold(
            train.score, train.threshold, nab.score_at(parts[cat], STANDARD, train.threshold)
        )
    return out


def pooled(parts: Mapping[str, nab.Corpus], chosen: Mapping[str, Fold]) -> float:
    raw = sum(f.held.raw for f in chosen.values())
    return merged(parts).normalise(raw, STANDARD)


def cell(f: Fold) -> str:
    if math.isnan(f.held.score):
        return f"{f.held.raw:+.2f} ({f.held.fp} fp)"
    return f"{f.held.score:6.1f} ({f.held.tp}/{f.held.fp}/{f.held.fn})"


def pick(pool: list[str], fold_of: Mapping[str, Mapping[str, Fold]], held: str) -> str:
    """The candidate that scores best on the categories other than ``held``."""
    best = pool[0]
    for name in pool[1:]:
        if fold_of[name][held].train > fold_of[best][held].train:
            best = name
    return best


def report(results: dict[str, dict[str, nab.Corpus]], cats: list[str]) -> None:
    fold_of = {name: folds(parts) for name, parts in results.items()}
    head = f"{'candidate':18s} {'in-sample':>9s} " + " ".join(f"{c[:26]:>26s}" for c in cats)
    print(head + f" {'LOCO pooled':>11s} {'gap':>5s}")
    for name, parts in results.items():
        inside = nab.optimize(merged(parts), STANDARD).score
        row = " ".join(f"{cell(fold_of[name][c]):>26s}" for c in cats)
        held = pooled(parts, fold_of[name])
        print(f"{name:18s} {inside:9.1f} {row} {held:11.1f} {inside - held:5.1f}")
    for label, online in (("chosen", False), ("chosen (online)", True)):
        pool = [c.name for c in CANDIDATES if c.name in results and c.online == online]
        if not pool:
            continue
        picks = {cat: pick(pool, fold_of, cat) for cat in cats}
        chosen = {cat: fold_of[picks[cat]][cat] for cat in cats}
        parts = {cat: results[picks[cat]][cat] for cat in cats}
        row = " ".join(f"{cell(chosen[c]):>26s}" for c in cats)
        print(f"{label:18s} {'':9s} {row} {pooled(parts, chosen):11.1f}")
        print("  picked: " + ", ".join(f"{c} <- {picks[c]}" for c in cats))


def cut_corpus(data: Path, rows: int, target: Path) -> Path:
    """``data`` with every file cut into its first and its last ``rows`` rows (``head_`` and
    ``tail_`` files), keeping the windows that start inside a cut, clipped to its end: a
    corpus of short series, as many of NAB's unseen files are."""
    import json

    import pandas as pd

    labels = nab.load_labels(data)
    out: dict[str, list[list[str]]] = {}
    for rel, windows in labels.items():
        frame = pd.read_csv(data / "data" / rel)
        stamps = pd.to_datetime(frame["timestamp"])
        cat, name = rel.split("/")
        for part, rows_of in (("head", slice(0, rows)), ("tail", slice(-rows, None))):
            piece, ts = frame.iloc[rows_of], stamps.iloc[rows_of]
            new = f"{cat}/{part}_{name}"
            (target / "data" / cat).mkdir(parents=True, exist_ok=True)
            piece.to_csv(target / "data" / new, index=False)
            out[new] = [
                [a, min(pd.Timestamp(b), ts.iloc[-1]).strftime("%Y-%m-%d %H:%M:%S.%f")]
                for a, b in windows
                if ts.iloc[0] <= pd.Timestamp(a) <= ts.iloc[-1]
            ]
    (target / "labels").mkdir(parents=True, exist_ok=True)
    (target / "labels" / "combined_windows.json").write_text(json.dumps(out, indent=4))
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--candidates", default=None, help="comma-separated candidate names")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/switchgear-loco-cache"))
    ap.add_argument("--cut", type=int, default=None, help="score first/last N rows of each file")
    args = ap.parse_args(argv)
    if args.cut:
        args.data = cut_corpus(args.data, args.cut, args.cache / f"cut{args.cut}")
    labels = nab.load_labels(args.data)
    wanted = args.candidates.split(",") if args.candidates else None
    names = wanted or (list(QUICK) if args.quick else [c.name for c in CANDIDATES])
    chosen = [c for c in CANDIDATES if c.name in names]
    cache = args.cache / code_hash()
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {
            (c.name, rel): pool.submit(score_file, c, args.data / "data" / rel, cache)
            for c in chosen
            for rel in labels
        }
        results = {
            c.name: corpora(
                labels, {rel: futures[c.name, rel].result() for rel in labels}, args.data
            )
            for c in chosen
        }
    cats = sorted({rel.split("/")[0] for rel in labels})
    print("NAB standard profile, leave-one-category-out; per category: score (TP/FP/FN windows")
    print("and rows) at the threshold chosen on the other categories")
    report(results, cats)
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
