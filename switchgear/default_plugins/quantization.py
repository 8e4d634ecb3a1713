"""Built-in worker plugin: the default model loader and the quantization methods.

Methods: ``int8-dynamic`` (torch dynamic int8 Linear layers, CPU), ``quanto-int8`` and
``quanto-int4`` (optimum-quanto weight quantization), ``onnx`` (export on the fly to ONNX
Runtime through optimum). Both hooks are ``trylast`` so a third-party plugin wins.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import Any

from switchgear.plugins.hookspecs import hookimpl
from switchgear.worker.onnx import export_onnx

METHODS = ("int8-dynamic", "quanto-int8", "quanto-int4", "onnx")


@hookimpl(trylast=True)
def load_model(spec: Any) -> Any:
    from switchgear.worker.loading import load_pretrained

    return load_pretrained(spec)


@hookimpl(trylast=True)
def quantize_model(bundle: Any, method: str, spec: Any) -> Any:
    if method not in METHODS:
        return None
    if not bundle.is_torch:
        raise ValueError(f"{method} needs a PyTorch model; {bundle.name} is {bundle.fmt}")
    if method == "int8-dynamic":
        return _int8_dynamic(bundle)
    if method.startswith("quanto-"):
        return _quanto(bundle, method)
    return _onnx(bundle)


def _int8_dynamic(bundle: Any) -> Any:
    import torch

    if bundle.device != "cpu":
        raise ValueError("int8-dynamic runs on CPU only; set device: cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.ao.quantization.quantize_dynamic(
            bundle.model.float(), {torch.nn.Linear}, dtype=torch.qint8
        )
    return dataclasses.replace(
        bundle, model=model.eval(), quantization="int8-dynamic", dtype="int8"
    )


def _quanto(bundle: Any, method: str) -> Any:
    from optimum.quanto import freeze, qint4, qint8, quantize

    weights = qint8 if method == "quanto-int8" else qint4
    quantize(bundle.model, weights=weights)
    freeze(bundle.model)
    return dataclasses.replace(bundle, quantization=method)


def _onnx(bundle: Any) -> Any:
    from optimum.onnxruntime import ORTModelForCausalLM

    tmp = Path(tempfile.mkdtemp(prefix="switchgear-onnx-"))
    try:
        export_onnx(bundle.model.float(), bundle.tokenizer, tmp)
        provider = (
            "CUDAExecutionProvider" if bundle.device.startswith("cuda") else "CPUExecutionProvider"
        )
        model = ORTModelForCausalLM.from_pretrained(str(tmp), use_cache=True, provider=provider)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    weakref.finalize(model, shutil.rmtree, str(tmp), True)
    return dataclasses.replace(bundle, model=model, quantization="onnx", dtype="fp32")
