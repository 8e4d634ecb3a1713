"""The ``switchgear`` command: parses arguments and calls into the package, nothing more.

Each sub-command imports its part lazily so ``switchgear config check`` does not pay for
torch, and a missing optional extra is reported as a clear message.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from switchgear.errors import ConfigError

_ML_MODULES = {
    "torch",
    "transformers",
    "optimum",
    "onnxruntime",
    "tokenizers",
    "safetensors",
    "psutil",
}


def _call(target: str, **kwargs: Any) -> int:
    module_name, func_name = target.split(":")
    module = importlib.import_module(module_name)
    func: Callable[..., int | None] = getattr(module, func_name)
    return int(func(**kwargs) or 0)


def _meta(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--meta expects key=value, got {pair!r}")
        out[key] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="switchgear", description=__doc__.splitlines()[0])
    p.add_argument("--log-level", default="INFO")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--config", "-c")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", type=int)

    w = sub.add_parser("worker", help="run a model worker")
    w.add_argument("--config", "-c")
    w.add_argument("--model", dest="model_path")
    w.add_argument("--name")
    w.add_argument("--host")
    w.add_argument("--port", type=int)
    w.add_argument("--quantization")
    w.add_argument("--dtype")
    w.add_argument("--device")

    up = sub.add_parser("up", help="run a worker and the gateway in front of it (the demo)")
    up.add_argument("--worker", dest="worker_config", required=True)
    up.add_argument("--gateway", dest="gateway_config", required=True)
    up.add_argument("--gateway-port", "--port", dest="gateway_port", type=int)
    up.add_argument("--worker-port", dest="worker_port", type=int)

    c = sub.add_parser("config", help="configuration tools")
    csub = c.add_subparsers(dest="config_command", required=True)
    cc = csub.add_parser("check", help="validate a config file")
    cc.add_argument("file")

    m = sub.add_parser("model", help="model tools")
    msub = m.add_subparsers(dest="model_command", required=True)
    mt = msub.add_parser("make-tiny", help="build a small random-weight model")
    mt.add_argument("dir")
    mt.add_argument("--arch", choices=["llama", "gpt2"], default="llama")
    mt.add_argument("--seed", type=int, default=0)
    mt.add_argument("--layers", type=int, default=2)
    mt.add_argument("--hidden", type=int, default=64)
    mt.add_argument("--vocab", type=int, default=1024)
    mt.add_argument("--format", choices=["safetensors", "bin", "pt", "onnx"], default="safetensors")

    sc = sub.add_parser("swap-check", help="run the hot-swap gates offline")
    sc.add_argument("old")
    sc.add_argument("new")
    sc.add_argument("--quantization")
    sc.add_argument("--eval", dest="eval_file")
    sc.add_argument("--config", "-c")

    sub.add_parser("doctor", help="check the environment before a swap").add_argument(
        "--config", "-c"
    )

    d = sub.add_parser("detect", help="score a timestamp,value CSV for anomalies")
    d.add_argument("file")
    d.add_argument("--detector", default="ensemble")
    d.add_argument("--out")

    pl = sub.add_parser("plugins", help="list, install or uninstall plugins")
    plsub = pl.add_subparsers(dest="plugins_command", required=True)
    pll = plsub.add_parser("list")
    pll.add_argument("--config", "-c")
    pll.add_argument("--json", action="store_true")
    pli = plsub.add_parser("install")
    pli.add_argument("names", nargs="+")
    plu = plsub.add_parser("uninstall")
    plu.add_argument("names", nargs="+")

    r = sub.add_parser("register", help="register an external backend in Consul")
    r.add_argument("--url", required=True)
    r.add_argument("--model", required=True)
    r.add_argument("--dc")
    r.add_argument("--id", dest="service_id")
    r.add_argument("--protocol", default="openai")
    r.add_argument("--meta", nargs="*", default=[])
    r.add_argument("--config", "-c")
    dr = sub.add_parser("deregister", help="remove an external backend from Consul")
    dr.add_argument("service_id")
    dr.add_argument("--config", "-c")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in _ML_MODULES:
            raise
        print(f"error: {exc}. Install the extras: pip install 'switchgear[ml]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "serve":
        return _call(
            "switchgear.proxy.server:serve_from_cli",
            config=args.config,
            host=args.host,
            port=args.port,
            workers=args.workers,
        )
    if cmd == "worker":
        return _call(
            "switchgear.worker.server:serve_from_cli",
            config=args.config,
            model_path=args.model_path,
            name=args.name,
            host=args.host,
            port=args.port,
            quantization=args.quantization,
            dtype=args.dtype,
            device=args.device,
        )
    if cmd == "up":
        return _call(
            "switchgear.launcher:up",
            worker_config=args.worker_config,
            gateway_config=args.gateway_config,
            gateway_port=args.gateway_port,
            worker_port=args.worker_port,
        )
    if cmd == "config":
        return _call("switchgear.settings.check:check_file", path=args.file)
    if cmd == "model":
        return _call(
            "switchgear.worker.tiny:make_tiny_cli",
            out_dir=args.dir,
            arch=args.arch,
            seed=args.seed,
            layers=args.layers,
            hidden=args.hidden,
            vocab=args.vocab,
            fmt=args.format,
        )
    if cmd == "swap-check":
        return _call(
            "switchgear.worker.swapcheck:swap_check_cli",
            old=args.old,
            new=args.new,
            quantization=args.quantization,
            eval_file=args.eval_file,
            config=args.config,
        )
    if cmd == "doctor":
        return _call("switchgear.worker.doctor:doctor_cli", config=args.config)
    if cmd == "detect":
        return _call(
            "switchgear.detector.offline:detect_cli",
            path=args.file,
            detector=args.detector,
            out=args.out,
        )
    if cmd == "plugins":
        if args.plugins_command == "list":
            return _call(
                "switchgear.plugins.commands:list_cli", config=args.config, as_json=args.json
            )
        return _call(f"switchgear.plugins.commands:{args.plugins_command}_cli", names=args.names)
    if cmd == "register":
        return _call(
            "switchgear.discovery.commands:register_cli",
            url=args.url,
            model=args.model,
            dc=args.dc,
            service_id=args.service_id,
            protocol=args.protocol,
            meta=_meta(args.meta),
            config=args.config,
        )
    if cmd == "deregister":
        return _call(
            "switchgear.discovery.commands:deregister_cli",
            service_id=args.service_id,
            config=args.config,
        )
    raise AssertionError(cmd)


if __name__ == "__main__":
    sys.exit(main())
