"""What each ``switchgear`` sub-command runs: its arguments to the keyword arguments of its
target, a ``module:function`` imported only when the command runs (so ``switchgear config
check`` does not pay for torch). :mod:`switchgear.cli` parses and dispatches here.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from typing import Any

Args = argparse.Namespace


def call(target: str, **kwargs: Any) -> int:
    module_name, func_name = target.split(":")
    module = importlib.import_module(module_name)
    func: Callable[..., int | None] = getattr(module, func_name)
    return int(func(**kwargs) or 0)


def meta(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--meta expects key=value, got {pair!r}")
        out[key] = value
    return out


def serve(a: Args) -> int:
    return call(
        "switchgear.settings.check:serve_cli",
        config=a.config,
        host=a.host,
        port=a.port,
        workers=a.workers,
    )


def worker(a: Args) -> int:
    return call(
        "switchgear.worker.server:serve_from_cli",
        config=a.config,
        model_path=a.model_path,
        name=a.name,
        host=a.host,
        port=a.port,
        quantization=a.quantization,
        dtype=a.dtype,
        device=a.device,
    )


def up(a: Args) -> int:
    return call(
        "switchgear.launcher:up",
        worker_config=a.worker_config,
        gateway_config=a.gateway_config,
        gateway_port=a.gateway_port,
        worker_port=a.worker_port,
    )


def config(a: Args) -> int:
    return call("switchgear.settings.check:check_file", path=a.file)


def model(a: Args) -> int:
    return call(
        "switchgear.worker.tiny:make_tiny_cli",
        out_dir=a.dir,
        arch=a.arch,
        seed=a.seed,
        layers=a.layers,
        hidden=a.hidden,
        vocab=a.vocab,
        fmt=a.format,
        tokenizer=a.tokenizer,
    )


def swap_check(a: Args) -> int:
    return call(
        "switchgear.worker.swapcheck:swap_check_cli",
        old=a.old,
        new=a.new,
        quantization=a.quantization,
        eval_file=a.eval_file,
        config=a.config,
    )


def doctor(a: Args) -> int:
    return call("switchgear.worker.doctor:doctor_cli", config=a.config)


def detect(a: Args) -> int:
    return call(
        "switchgear.detector.offline:detect_cli",
        path=a.file,
        detector=a.detector,
        out=a.out,
        online=a.online,
        calibrate=a.calibrate,
    )


def plugins(a: Args) -> int:
    if a.plugins_command == "list":
        return call("switchgear.plugins.commands:list_cli", config=a.config, as_json=a.json)
    return call(f"switchgear.plugins.commands:{a.plugins_command}_cli", names=a.names)


def register(a: Args) -> int:
    return call(
        "switchgear.discovery.commands:register_cli",
        url=a.url,
        model=a.model,
        dc=a.dc,
        service_id=a.service_id,
        protocol=a.protocol,
        meta=meta(a.meta),
        config=a.config,
    )


def deregister(a: Args) -> int:
    return call(
        "switchgear.discovery.commands:deregister_cli", service_id=a.service_id, config=a.config
    )


def rollout(a: Args) -> int:
    return call(
        "switchgear.proxy.rollout_cli:rollout_cli",
        model=a.model,
        path=a.path,
        url=a.url,
        steps=a.steps,
        admin_key=a.admin_key,
        wait=a.wait,
        options=meta(a.option),
    )
