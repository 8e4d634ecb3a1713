"""ONNX export of a PyTorch causal LM, shared by ``make-tiny --format onnx`` and the ``onnx``
quantization method of the built-in quantization plugin."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any


def export_onnx(model: Any, tokenizer: Any, out: str | Path) -> Path:
    """Export a PyTorch causal LM (with KV cache) to an ONNX Runtime directory at ``out``.

    Tracing emits TracerWarnings by design (shapes are traced as constants where the model
    branches on them); they are silenced here, not in the caller.
    """
    from optimum.exporters.onnx import main_export

    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="switchgear-export-") as src, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(src)
        tokenizer.save_pretrained(src)
        main_export(
            src,
            output=out,
            task="text-generation-with-past",
            do_validation=False,
            local_files_only=True,
        )
    return out
