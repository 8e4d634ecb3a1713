"""``switchgear doctor``: what an operator checks before a swap, as a table with fixes."""

from __future__ import annotations

import platform
import sys
import urllib.request
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

from switchgear.settings import Settings, load_settings

Status = Literal["ok", "warn", "fail"]

SUPPORTED: dict[str, tuple[str, str | None, bool]] = {
    # package: (minimum, first unsupported major or None, required)
    "torch": ("2.1", None, True),
    "transformers": ("4.40", "5", True),
    "tokenizers": ("0.19", None, True),
    "optimum": ("1.20", None, False),
    "optimum-onnx": ("0.0.1", None, False),
    "onnxruntime": ("1.17", None, False),
    "optimum-quanto": ("0.2", None, False),
}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def _vtuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split("+")[0].split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def package_checks() -> list[Check]:
    checks = [
        Check(
            "python",
            "ok" if sys.version_info >= (3, 11) else "fail",
            platform.python_version(),
            "" if sys.version_info >= (3, 11) else "install Python 3.11 or newer",
        )
    ]
    for pkg, (low, high, required) in SUPPORTED.items():
        try:
            v = version(pkg)
        except PackageNotFoundError:
            checks.append(
                Check(
                    pkg,
                    "fail" if required else "warn",
                    "not installed",
                    f"pip install 'switchgear[ml]' (needs {pkg}>={low})",
                )
            )
            continue
        good = _vtuple(v) >= _vtuple(low) and (high is None or _vtuple(v) < _vtuple(high))
        rng = f">={low}" + (f",<{high}" if high else "")
        checks.append(
            Check(
                pkg,
                "ok" if good else ("fail" if required else "warn"),
                f"{v} (supported {rng})",
                "" if good else f"pip install '{pkg}{rng}'",
            )
        )
    return checks


def cuda_checks() -> list[Check]:
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return [
            Check(
                "cuda",
                "ok",
                "not available: models run on CPU",
                "install a CUDA build of torch for GPUs",
            )
        ]
    out = []
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        out.append(
            Check(
                f"cuda:{i}",
                "ok" if free > 1 << 30 else "warn",
                f"{torch.cuda.get_device_name(i)}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free",
                "" if free > 1 << 30 else "free GPU memory or use swap_mode: drain",
            )
        )
    return out


def model_checks(settings: Settings) -> list[Check]:
    if settings.worker is None:
        return [Check("models", "warn", "no worker section in the config", "add worker.model")]
    spec = settings.worker.model
    path = Path(spec.model_name_or_path).expanduser()
    if not path.exists():
        return [
            Check(
                f"model {spec.served_name()}",
                "fail",
                f"{path} does not exist",
                f"switchgear model make-tiny {path} or fix worker.model.model_name_or_path",
            )
        ]
    try:
        from switchgear.worker.loading import detect_format, load_tokenizer

        fmt, directory = detect_format(path)
        tok = load_tokenizer(spec, directory)
    except Exception as exc:
        return [
            Check(
                f"model {spec.served_name()}",
                "fail",
                f"tokenizer does not load: {exc}",
                "check tokenizer files beside the weights",
            )
        ]
    template = "with" if getattr(tok, "chat_template", None) else "without"
    return [
        Check(
            f"model {spec.served_name()}",
            "ok",
            f"{fmt} at {path}; tokenizer {len(tok)} tokens, {template} chat template",
        )
    ]


def consul_check(settings: Settings) -> list[Check]:
    c = settings.consul
    if c is None or not c.enabled:
        return []
    url = f"{c.scheme}://{c.host}:{c.port}/v1/status/leader"
    req = urllib.request.Request(url, headers={"X-Consul-Token": c.token} if c.token else {})
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:  # noqa: S310 - operator-configured URL
            leader = resp.read().decode().strip()
    except Exception as exc:
        return [
            Check(
                "consul", "fail", f"{url}: {exc}", "start the Consul agent or fix consul.host/port"
            )
        ]
    return [
        Check(
            "consul",
            "ok" if leader.strip('"') else "warn",
            f"leader {leader}",
            "" if leader.strip('"') else "the cluster has no leader",
        )
    ]


def run_checks(settings: Settings) -> list[Check]:
    return package_checks() + cuda_checks() + model_checks(settings) + consul_check(settings)


def render(checks: list[Check]) -> str:
    head = ("check", "status", "detail", "fix")
    rows = [(c.name, c.status.upper(), c.detail, c.fix) for c in checks]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    return "\n".join(
        fmt.format(*r) for r in [head, tuple("-" * w for w in widths) + ("---",), *rows]
    )


def doctor_cli(config: str | None = None) -> int:
    settings = load_settings(config)
    checks = run_checks(settings)
    print(render(checks))
    blocking = [c for c in checks if c.status == "fail"]
    print(f"\n{len(blocking)} blocking problem(s)" if blocking else "\nready")
    return 1 if blocking else 0
