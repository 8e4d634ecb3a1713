"""The LSTM detector: a small forecaster trained online, scored by its error in scales.

A one-layer LSTM (``hidden`` units) reads the last ``window`` points, normalised by the
training window's mean and deviation, and predicts the next one. Every ``refit_every``
points a fit task snapshots the last ``train_on`` points and trains a fresh copy for
``epochs`` passes (Adam) in an executor — never on the event loop; the trained weights are
installed when it finishes and the previous model serves until then.

Each point's absolute forecast error is divided by the robust scale of the last
``errors_kept`` errors (1.4826 × their median, re-estimated every ``threshold_every``
points) and squashed exactly as the other detectors' deviations are
(:func:`~switchgear.detector.baseline.squash`), so its raw surprise is on their scale and
the ensemble can average it with theirs; with ``likelihood`` (the default) it then goes
through the same likelihood stage. (Hundman et al.'s nonparametric dynamic threshold,
used before, put the raw score on a scale of its own and scored lower on NAB; ``smoothing``
is still accepted for configuration compatibility and no longer used.)
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from switchgear.detector.base import FitTask
from switchgear.detector.baseline import squash
from switchgear.detector.likelihood import Likelihood, NewRange


@dataclass(frozen=True, slots=True)
class TrainedLSTM:
    state: dict[str, Any]
    mean: float
    sd: float


def _net(hidden: int) -> Any:
    import torch
    from torch import nn

    class Forecaster(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(1, hidden, batch_first=True)
            self.head = nn.Linear(hidden, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(x)
            forecast: torch.Tensor = self.head(out[:, -1, :]).squeeze(-1)
            return forecast

    return Forecaster()


def train(
    y: np.ndarray, window: int, hidden: int, epochs: int, max_samples: int, seed: int
) -> TrainedLSTM:
    """Train a forecaster on ``y`` (runs in an executor; pure function of its arguments)."""
    import torch

    torch.manual_seed(seed)
    mean, sd = float(np.mean(y)), float(np.std(y)) or 1.0
    z = ((y - mean) / sd).astype(np.float32)
    idx = np.arange(window, len(z))
    if len(idx) > max_samples:
        idx = np.random.default_rng(seed).choice(idx, max_samples, replace=False)
    x = torch.from_numpy(np.stack([z[i - window : i] for i in idx])[:, :, None])
    t = torch.from_numpy(z[idx])
    net = _net(hidden)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(epochs):
        for b in torch.randperm(len(idx)).split(64):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x[b]), t[b])
            loss.backward()
            opt.step()
    return TrainedLSTM({k: v.detach().clone() for k, v in net.state_dict().items()}, mean, sd)


class LSTMDetector:
    """See the module docstring. ``update`` runs one forward pass once a model exists."""

    name = "lstm"

    def __init__(  # noqa: PLR0913 - keyword-only, one per `detector.params` key
        self,
        *,
        window: int = 50,
        hidden: int = 32,
        epochs: int = 3,
        train_on: int = 1000,
        refit_every: int = 500,
        min_train: int = 300,
        max_samples: int = 512,
        smoothing: int = 10,
        errors_kept: int = 500,
        threshold_every: int = 50,
        seed: int = 0,
        likelihood: bool = True,
        new_range: bool = True,
    ) -> None:
        self.window, self.hidden, self.epochs = window, hidden, epochs
        self.refit_every, self.min_train, self.max_samples = refit_every, min_train, max_samples
        self.seed = seed
        self.history: deque[float] = deque(maxlen=max(train_on, window + 1))
        self.errors: deque[float] = deque(maxlen=errors_kept)
        self.threshold_every = threshold_every
        self.scale = 0.0
        self.err = math.nan  # |value - forecast| of the latest point (nan: no forecast yet)
        self.block_raw: np.ndarray = np.zeros(0)
        self.block_err: np.ndarray = np.zeros(0)
        self.n = 0
        self.fitted_at = -1
        self.pending = False
        self.net: Any = None
        self.norm = (0.0, 1.0)
        self.last = 0.0
        self.raw = 0.0
        self.lik = Likelihood() if likelihood else None
        self.range = NewRange() if new_range else None

    def _predict(self) -> float:
        import torch

        mean, sd = self.norm
        n = len(self.history)
        seq = np.fromiter(
            itertools.islice(self.history, n - self.window, n), dtype=np.float32, count=self.window
        )
        x = torch.from_numpy((seq - np.float32(mean)) / np.float32(sd))[None, :, None]
        with torch.inference_mode():
            return float(self.net(x)) * sd + mean

    def _score(self, value: float, predicted: float | None) -> float:
        score = 0.0
        self.err = math.nan
        if predicted is not None:
            self.err = abs(value - predicted)
            err = self.err / self.norm[1]
            self.errors.append(err)
            if len(self.errors) >= 50 and (self.n % self.threshold_every == 0 or self.scale == 0):
                # |error| of a normal forecast error: median = 0.6745 sd
                self.scale = 1.4826 * float(np.median(np.fromiter(self.errors, dtype=float)))
            if self.scale > 0:
                score = squash(err / (self.scale + 1e-9))
        self.history.append(value)
        self.n += 1
        self.raw = score
        self.last = self.lik.update(score) if self.lik is not None else score
        if self.range is not None and self.range.update(value) == 1.0:
            self.last = 1.0
        return self.last

    def update(self, value: float) -> float:
        ready = self.net is not None and len(self.history) >= self.window
        return self._score(value, self._predict() if ready else None)

    def score_block(self, values: np.ndarray) -> np.ndarray:
        """Offline scoring with the same results as ``update`` + inline fits, but with one
        batched forward pass per stretch between fits (inputs are known values)."""
        import torch

        out = np.empty(len(values))
        raws = np.empty(len(values))
        errs = np.empty(len(values))
        i = 0
        while i < len(values):
            due = self.min_train if self.fitted_at < 0 else self.fitted_at + self.refit_every
            end = min(len(values), i + max(1, due - self.n))
            preds: list[float | None] = [None] * (end - i)
            if self.net is not None:
                hist = np.concatenate([np.fromiter(self.history, dtype=float), values[i:end]])
                first = len(self.history)
                ks = [k for k in range(first, first + end - i) if k >= self.window]
                if ks:
                    mean, sd = self.norm
                    x = np.stack([(hist[k - self.window : k] - mean) / sd for k in ks])
                    with torch.no_grad():
                        y = self.net(torch.from_numpy(x.astype(np.float32))[:, :, None]).numpy()
                    for k, p in zip(ks, y, strict=True):
                        preds[k - first] = float(p) * sd + mean
            for j in range(i, end):
                out[j] = self._score(float(values[j]), preds[j - i])
                raws[j] = self.raw
                errs[j] = self.err
                task = self.fit_task()
                if task is not None:
                    self.install(task())
            i = end
        self.block_raw = raws
        self.block_err = errs
        return out

    def fit_task(self) -> FitTask | None:
        if self.pending or self.n < self.min_train:
            return None
        if self.fitted_at >= 0 and self.n - self.fitted_at < self.refit_every:
            return None
        self.pending = True
        self.fitted_at = self.n
        y = np.fromiter(self.history, dtype=float, count=len(self.history))
        args = (self.window, self.hidden, self.epochs, self.max_samples, self.seed + self.n)
        return lambda: train(y, *args)

    def install(self, fitted: Any) -> None:
        self.pending = False
        if not isinstance(fitted, TrainedLSTM):
            return
        if self.net is None:
            self.net = _net(self.hidden)
        self.net.load_state_dict(fitted.state)
        self.norm = (fitted.mean, fitted.sd)

    def contributions(self) -> dict[str, float]:
        return {self.name: self.last}
