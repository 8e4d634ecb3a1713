"""The swap gates offline: integrity (never forcible), architecture and tokenizer diffs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from switchgear.cli import main
from switchgear.plugins.hookspecs import hookimpl
from switchgear.settings import parse_settings
from switchgear.worker import swapcheck
from switchgear.worker.tiny import TinySpec
from tests.worker.conftest import _build

NAN_TENSOR = "model.layers.0.self_attn.q_proj.weight"
FAST = {"latency_tolerance": 20.0, "latency_repeats": 2, "generation_tokens": 6}


def corrupt(src: Path, dst: Path, tensor: str = NAN_TENSOR, value: float = float("nan")) -> Path:
    """A copy of ``src`` whose checkpoint holds one ``value`` in ``tensor`` (written to disk)."""
    from safetensors.torch import load_file, save_file

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    state = load_file(dst / "model.safetensors")
    state[tensor][0, 0] = value
    save_file(state, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def settings_for(path: Path, **gates: Any) -> Any:
    return parse_settings(
        {"worker": {"model": {"model_name_or_path": str(path)}, "gates": {**FAST, **gates}}}
    )


class Skew:
    """A loader plugin that adds ``bias`` to the logits of ``token`` (a broken conversion)."""

    def __init__(self, target: Path, token: int, bias: float) -> None:
        self.target, self.token, self.bias = str(target), token, bias

    @hookimpl(tryfirst=True)
    def load_model(self, spec: Any) -> Any:
        if spec.model_name_or_path != self.target:
            return None
        from switchgear.worker.loading import load_pretrained

        bundle = load_pretrained(spec)
        forward, token, bias = bundle.model.forward, self.token, self.bias

        def skewed(*args: Any, **kwargs: Any) -> Any:
            out = forward(*args, **kwargs)
            out.logits[..., token] += bias
            return out

        bundle.model.forward = skewed
        return bundle


@pytest.fixture(scope="module")
def tiny_english(models_dir: Path) -> Path:
    return _build(models_dir, "tiny-english-tok", TinySpec(seed=0, tokenizer="english"))


def test_nan_weight_is_refused_naming_the_tensor(
    tiny: Path, tmp_path: Path, plugin_manager: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = corrupt(tiny, tmp_path / "nan")
    ok, results = swapcheck.swap_check(
        str(tiny), str(bad), settings=settings_for(tiny), pm=plugin_manager
    )
    assert not ok and [r.gate for r in results] == ["finite_weights"]
    assert NAN_TENSOR in results[0].detail and "1 NaN" in results[0].detail
    assert results[0].data == {"tensor": NAN_TENSOR, "where": "checkpoint"}

    ok, results = swapcheck.swap_check(
        str(tiny),
        str(corrupt(tiny, tmp_path / "inf", value=float("inf"))),
        settings=settings_for(tiny),
        pm=plugin_manager,
    )
    assert not ok and "1 infinite" in results[0].detail

    assert main(["swap-check", str(tiny), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "finite_weights  FAIL" in out and NAN_TENSOR in out and "REFUSED" in out


def test_integrity_gates_ignore_force(tiny: Path, tmp_path: Path, plugin_manager: Any) -> None:
    from switchgear.worker.gates import parse_force

    bad = corrupt(tiny, tmp_path / "nan")
    with pytest.raises(ValueError, match="finite_weights checks integrity"):
        parse_force(["latency", "finite_weights"])
    old = swapcheck.load_bundle(swapcheck.ModelSpec(model_name_or_path=str(tiny)), plugin_manager)
    new = swapcheck.load_bundle(swapcheck.ModelSpec(model_name_or_path=str(bad)), plugin_manager)
    results = swapcheck.run_gates(
        old, new, settings_for(tiny).worker.gates, plugin_manager, force=True
    )
    assert results[0].gate == "finite_weights" and not results[0].passed
    assert not results[0].forced


def test_non_finite_logits_name_the_probe(
    tiny: Path, tiny_seed1: Path, plugin_manager: Any
) -> None:
    plugin_manager.register(Skew(tiny_seed1, token=5, bias=float("inf")))
    ok, results = swapcheck.swap_check(
        str(tiny), str(tiny_seed1), settings=settings_for(tiny), pm=plugin_manager
    )
    assert not ok and [r.gate for r in results] == ["finite_weights", "finite_logits"]
    assert "Hello, how are you today?" in results[1].detail


@pytest.mark.parametrize(
    ("token", "why"),
    [(0, "the greedy answer is empty"), (100, "repeated 6 times")],
)
def test_degenerate_generation_is_refused(
    tiny: Path, tiny_seed1: Path, plugin_manager: Any, token: int, why: str
) -> None:
    # token 0 is <|endoftext|>: the candidate stops at once; 100 is an ordinary token it repeats
    plugin_manager.register(Skew(tiny_seed1, token=token, bias=1e4))
    ok, results = swapcheck.swap_check(
        str(tiny), str(tiny_seed1), settings=settings_for(tiny), pm=plugin_manager
    )
    generation = next(r for r in results if r.gate == "generation")
    assert not ok and not generation.passed and not generation.forced
    assert why in generation.detail and "probe 'Hello, how are you today?'" in generation.detail


def test_repetition_the_current_model_shares_is_allowed(
    tiny: Path, tiny_seed1: Path, plugin_manager: Any
) -> None:
    plugin_manager.register(Skew(tiny, token=100, bias=1e4))
    plugin_manager.register(Skew(tiny_seed1, token=100, bias=1e4))
    ok, results = swapcheck.swap_check(
        str(tiny), str(tiny_seed1), settings=settings_for(tiny), pm=plugin_manager
    )
    generation = next(r for r in results if r.gate == "generation")
    assert generation.passed, generation.detail


def test_architecture_gate_reports_a_config_diff(
    tiny: Path, tiny_format: Any, plugin_manager: Any
) -> None:
    gpt2 = tiny_format("safetensors", "gpt2")
    ok, results = swapcheck.swap_check(
        str(tiny), str(gpt2), settings=settings_for(tiny), pm=plugin_manager
    )
    arch = next(r for r in results if r.gate == "architecture")
    assert not ok and not arch.passed and "model_type llama -> gpt2" in arch.detail
    assert results[0].passed and results[1].passed  # weights and logits are finite
    assert arch.data is not None and arch.data["diff"]["model_type"] == {
        "current": "llama",
        "candidate": "gpt2",
    }
    assert set(arch.data["current"]) == {
        "model_type",
        "hidden_size",
        "layers",
        "heads",
        "kv_heads",
        "vocab_size",
        "max_positions",
        "chat_template",
    }
    assert arch.data["candidate"]["hidden_size"] == 64 and arch.data["candidate"]["layers"] == 2


def test_make_tiny_english_tokenizer_is_refused_by_the_tokenizer_gate(
    tiny: Path, tiny_english: Path, tmp_path: Path, plugin_manager: Any
) -> None:
    out = tmp_path / "cli-english"
    assert main(["model", "make-tiny", str(out), "--tokenizer", "english"]) == 0
    assert (out / "tokenizer.json").read_bytes() == (tiny_english / "tokenizer.json").read_bytes()
    assert (out / "tokenizer.json").read_bytes() != (tiny / "tokenizer.json").read_bytes()

    ok, results = swapcheck.swap_check(
        str(tiny), str(tiny_english), settings=settings_for(tiny), pm=plugin_manager
    )
    by = {r.gate: r for r in results}
    assert not ok and by["architecture"].passed and not by["tokenizer"].passed
    detail = by["tokenizer"].detail
    assert "vocabulary differs" in detail and "4 of 4 probes tokenize differently" in detail
    assert [r.gate for r in results if not r.passed] == ["tokenizer"]


def test_chat_template_change_is_seen_by_both_gates(
    tiny: Path, tmp_path: Path, plugin_manager: Any
) -> None:
    other = tmp_path / "other-template"
    shutil.copytree(tiny, other)
    # transformers keeps the template in chat_template.jinja (older ones in tokenizer_config)
    (other / "chat_template.jinja").write_text(
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    )
    ok, results = swapcheck.swap_check(
        str(tiny), str(other), settings=settings_for(tiny), pm=plugin_manager
    )
    by = {r.gate: r for r in results}
    assert not ok and "chat_template sha256:" in by["architecture"].detail
    assert "the chat template renders 4 of 4 probes differently" in by["tokenizer"].detail
    assert "tokenize differently" not in by["tokenizer"].detail


def test_collect_applies_force_by_name_and_never_to_integrity() -> None:
    from switchgear.settings.worker import GateSettings
    from switchgear.worker.gates import GateResult, SwapContext, collect

    ctx = SwapContext(gates=GateSettings(), force=frozenset({"latency", "policy"}))
    results = collect(
        [
            [GateResult("latency", False, "slow"), GateResult("eval", False, "worse")],
            {"gate": "policy", "passed": False, "forced": ctx.force},
            GateResult("finite_weights", False, "nan", forced=True),
        ],
        ctx,
    )
    assert [(r.gate, r.forced) for r in results] == [
        ("latency", True),
        ("eval", False),
        ("policy", True),
        ("finite_weights", False),
    ]
    assert all(isinstance(r.forced, bool) for r in results)
    everything = collect([GateResult("eval", False, "worse")], SwapContext(GateSettings(), True))
    assert everything[0].forced
