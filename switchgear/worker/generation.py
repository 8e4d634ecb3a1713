"""What a generation request asks for and what it yields, shared by the engine, the decode
loop and the HTTP views: sampling parameters, token log-probabilities, text events, and the
metrics interface the engine reports to.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # None: off; k: the chosen token's and the k most likely
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    constraint: Any = None  # a :class:`switchgear.worker.structured.Constraint`


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One sampled token: its text, log-probability and the most likely alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class GenEvent:
    """A text delta; the last event of a request carries ``finish_reason``."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    logprobs: tuple[TokenLogprob, ...] = ()


class EngineMetrics(Protocol):
    def set_queue_depth(self, n: int) -> None: ...
    def observe_batch(self, size: int) -> None: ...
    def observe_ttft(self, seconds: float) -> None: ...
    def add_tokens(self, n: int, seconds: float) -> None: ...
    def observe_cancel(self) -> None: ...


class NoMetrics:
    """Metrics that go nowhere (an engine made without any)."""

    def set_queue_depth(self, n: int) -> None: ...
    def observe_batch(self, size: int) -> None: ...
    def observe_ttft(self, seconds: float) -> None: ...
    def add_tokens(self, n: int, seconds: float) -> None: ...
    def observe_cancel(self) -> None: ...


def new_generator(seed: int | None) -> Any:
    import torch

    return torch.Generator().manual_seed(seed if seed is not None else random.getrandbits(63))
