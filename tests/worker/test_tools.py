"""The worker's command-line tools: make-tiny, swap-check (with --eval), doctor, worker settings."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchgear.cli import main
from switchgear.settings import parse_settings
from switchgear.settings.worker import ModelSpec
from switchgear.worker import swapcheck
from switchgear.worker.doctor import run_checks
from switchgear.worker.loading import load_bundle


def test_make_tiny_cli_writes_a_loadable_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    assert (
        main(
            [
                "model",
                "make-tiny",
                str(out),
                "--arch",
                "gpt2",
                "--seed",
                "3",
                "--layers",
                "1",
                "--hidden",
                "32",
            ]
        )
        == 0
    )
    assert "wrote a tiny gpt2 model" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["n_layer"] == 1
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()


def test_swap_check_passes_and_refuses_with_eval(
    tiny: Path,
    tiny_seed1: Path,
    tmp_path: Path,
    plugin_manager: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = load_bundle(ModelSpec(model_name_or_path=str(tiny)), plugin_manager)
    prompts = ["hello", "你好", "The weather", "Translate: 我喜欢", "Numbers: 1 2 3", "def add"]
    labels = [
        a.rstrip("\ufffd").strip() for a in swapcheck.answers(old, [(p, "x") for p in prompts])
    ]
    assert all(labels)
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(
        "\n".join(
            json.dumps({"prompt": p, "label": lab}) for p, lab in zip(prompts, labels, strict=True)
        )
    )
    settings = parse_settings(
        {
            "worker": {
                "model": {"model_name_or_path": str(tiny)},
                "gates": {"latency_tolerance": 20.0, "latency_repeats": 2},
            }
        }
    )

    ok, results = swapcheck.swap_check(
        str(tiny), str(tiny), eval_file=str(eval_file), settings=settings, pm=plugin_manager
    )
    assert ok and results[-1].gate == "eval" and results[-1].value == 0.0

    ok, results = swapcheck.swap_check(
        str(tiny), str(tiny_seed1), eval_file=str(eval_file), settings=settings, pm=plugin_manager
    )
    assert not ok and results[-1].gate == "eval" and not results[-1].passed
    assert "labels no longer produced" in results[-1].detail

    config = tmp_path / "w.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(exclude_defaults=True)))
    assert (
        main(
            ["swap-check", str(tiny), str(tiny_seed1), "--eval", str(eval_file), "-c", str(config)]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "gate" in out and "FAIL" in out and "REFUSED" in out


def test_score_counts_accuracy_and_macro_f1() -> None:
    s = swapcheck.score(["a", "b", "b", "a"], ["a", "b", "a", "a"])
    assert (
        s.accuracy == 0.75 and abs(s.macro_f1 - (0.8 + 2 / 3) / 2) < 1e-9 and s.labels == {"a", "b"}
    )


def test_doctor_reports_models_and_consul(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = parse_settings({"worker": {"model": {"model_name_or_path": str(tiny), "name": "tiny"}}})
    checks = {c.name: c for c in run_checks(good)}
    assert checks["python"].status == "ok" and checks["torch"].status == "ok"
    assert checks["model tiny"].status == "ok" and "chat template" in checks["model tiny"].detail

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "bad.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "worker": {"model": {"model_name_or_path": str(tmp_path / "missing")}},
                "consul": {"host": "127.0.0.1", "port": port},
            }
        )
    )
    assert main(["doctor", "-c", str(config)]) == 1
    out = capsys.readouterr().out
    assert "does not exist" in out and "consul" in out and "blocking problem" in out


def test_worker_settings_from_flags_only(tiny: Path) -> None:
    from switchgear.worker.server import worker_settings

    s = worker_settings(None, model_path=str(tiny), port=9123, quantization="quanto-int8")
    assert (
        s.worker is not None
        and s.worker.model.quantization == "quanto-int8"
        and s.listen.port == 9123
    )
    assert s.worker.model.served_name() == "tiny"


def test_example_config_is_valid() -> None:
    from switchgear.settings import load_settings

    settings = load_settings(Path(__file__).parents[2] / "config" / "worker.yaml")
    assert settings.worker is not None and settings.listen.port == 9001
    assert settings.worker.model.model_name_or_path == "models/tiny"
