"""The ``switchgear`` command: parses arguments and calls into the package, nothing more.

Each sub-command imports its part lazily so ``switchgear config check`` does not pay for
torch, and a missing optional extra is reported as a clear message.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TypeAlias

from switchgear import cli_commands as commands
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


Args = argparse.Namespace
#: What ``add_subparsers()`` returns; each ``_add_*`` function adds its command to it.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="switchgear", description=__doc__.splitlines()[0])
    p.add_argument("--log-level", default="INFO")
    sub = p.add_subparsers(dest="command", required=True)
    # each adds its sub-command and sets ``run``, the function _dispatch calls with the args
    for add in (
        _add_serve,
        _add_worker,
        _add_up,
        _add_config,
        _add_model,
        _add_swap_check,
        _add_doctor,
        _add_detect,
        _add_plugins,
        _add_registration,
        _add_rollout,
    ):
        add(sub)
    return p


def _add_serve(sub: Commands) -> None:
    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--config", "-c")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", type=int)
    s.set_defaults(run=commands.serve)


def _add_worker(sub: Commands) -> None:
    w = sub.add_parser("worker", help="run a model worker")
    w.add_argument("--config", "-c")
    w.add_argument("--model", dest="model_path")
    w.add_argument("--name")
    w.add_argument("--host")
    w.add_argument("--port", type=int)
    w.add_argument("--quantization")
    w.add_argument("--dtype")
    w.add_argument("--device")
    w.set_defaults(run=commands.worker)


def _add_up(sub: Commands) -> None:
    up = sub.add_parser("up", help="run a worker and the gateway in front of it (the demo)")
    up.add_argument("--worker", dest="worker_config", required=True)
    up.add_argument("--gateway", dest="gateway_config", required=True)
    up.add_argument("--gateway-port", "--port", dest="gateway_port", type=int)
    up.add_argument("--worker-port", dest="worker_port", type=int)
    up.set_defaults(run=commands.up)


def _add_config(sub: Commands) -> None:
    c = sub.add_parser("config", help="configuration tools")
    csub = c.add_subparsers(dest="config_command", required=True)
    cc = csub.add_parser("check", help="validate a config file")
    cc.add_argument("file")
    c.set_defaults(run=commands.config)


def _add_model(sub: Commands) -> None:
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
    mt.add_argument("--tokenizer", choices=["mixed", "english"], default="mixed")
    m.set_defaults(run=commands.model)


def _add_swap_check(sub: Commands) -> None:
    sc = sub.add_parser("swap-check", help="run the hot-swap gates offline")
    sc.add_argument("old")
    sc.add_argument("new")
    sc.add_argument("--quantization")
    sc.add_argument("--eval", dest="eval_file")
    sc.add_argument("--config", "-c")
    sc.set_defaults(run=commands.swap_check)


def _add_doctor(sub: Commands) -> None:
    doc = sub.add_parser("doctor", help="check the environment before a swap")
    doc.add_argument("--config", "-c")
    doc.set_defaults(run=commands.doctor)


def _add_detect(sub: Commands) -> None:
    d = sub.add_parser("detect", help="score a timestamp,value CSV for anomalies")
    d.add_argument("file")
    d.add_argument("--detector", default="ensemble")
    d.add_argument("--out")
    d.add_argument(
        "--online",
        action="store_true",
        help="score the gateway's online mode, point by point (calibrated scores)",
    )
    d.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="calibrated scores (the default online; --no-calibrate for the raw likelihood)",
    )
    d.set_defaults(run=commands.detect)


def _add_plugins(sub: Commands) -> None:
    pl = sub.add_parser("plugins", help="list, install or uninstall plugins")
    plsub = pl.add_subparsers(dest="plugins_command", required=True)
    pll = plsub.add_parser("list")
    pll.add_argument("--config", "-c")
    pll.add_argument("--json", action="store_true")
    pli = plsub.add_parser("install")
    pli.add_argument("names", nargs="+")
    plu = plsub.add_parser("uninstall")
    plu.add_argument("names", nargs="+")
    pl.set_defaults(run=commands.plugins)


def _add_registration(sub: Commands) -> None:
    r = sub.add_parser("register", help="register an external backend in Consul")
    r.add_argument("--url", required=True)
    r.add_argument("--model", required=True)
    r.add_argument("--dc")
    r.add_argument("--id", dest="service_id")
    r.add_argument("--protocol", default="openai")
    r.add_argument("--meta", nargs="*", default=[])
    r.add_argument("--config", "-c")
    r.set_defaults(run=commands.register)
    dr = sub.add_parser("deregister", help="remove an external backend from Consul")
    dr.add_argument("service_id")
    dr.add_argument("--config", "-c")
    dr.set_defaults(run=commands.deregister)


def _add_rollout(sub: Commands) -> None:
    ro = sub.add_parser("rollout", help="roll a new model through a model's workers")
    ro.add_argument("model")
    ro.add_argument("path", help="the candidate, as the workers see it")
    ro.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway")
    ro.add_argument("--steps", type=float, nargs="+", default=[10.0, 50.0])
    ro.add_argument("--admin-key", help="default: $SWITCHGEAR_ADMIN_KEY")
    ro.add_argument("--no-wait", dest="wait", action="store_false")
    ro.add_argument("--option", nargs="*", default=[], help="e.g. step_seconds=10")
    ro.set_defaults(run=commands.rollout)


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


def _dispatch(args: Args) -> int:
    run: Callable[[Args], int] = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
