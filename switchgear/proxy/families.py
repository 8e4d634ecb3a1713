"""Known model families: metadata a backend does not report, matched by model-name patterns.

The router reads context lengths, languages, capabilities and costs from here; the prompt
format adapters read ``prompt_format``. Precedence, lowest first: this catalogue, then a
backend's own metadata (Consul service meta), then ``router.catalogue`` patterns in config,
then ``models.<name>`` in config. :func:`resolve_models` applies all four.

``cost`` is relative (about the parameter count in billions), so the router's "cheapest
that fits" prefers the smaller model. Languages are ISO 639-1 codes; a model with only
partial support lists the code in ``extra["partial_languages"]``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from switchgear.types import Backend, ModelInfo


@dataclass(frozen=True, slots=True)
class Family:
    pattern: str
    context_length: int
    languages: tuple[str, ...]
    cost: float
    prompt_format: str | None = None
    capabilities: tuple[str, ...] = ()
    partial_languages: tuple[str, ...] = ()
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern, re.IGNORECASE))


ZH_EN = ("zh", "en")
MULTI = ("en", "zh", "fr", "de", "es", "ja", "ko")

# More specific patterns first: the first match wins.
FAMILIES: tuple[Family, ...] = (
    Family(r"chatglm3.*32k", 32768, ZH_EN, 6, "chatglm3"),
    Family(r"chatglm3", 8192, ZH_EN, 6, "chatglm3"),
    Family(r"glm-?4.*9b", 131072, ZH_EN, 9, None, ("tools",)),
    Family(r"baichuan2.*13b", 4096, ZH_EN, 13, "baichuan2"),
    Family(r"baichuan2", 4096, ZH_EN, 7, "baichuan2"),
    Family(r"deepseek-?coder.*33b", 16384, ZH_EN, 33, None, ("code",)),
    Family(r"deepseek-?coder", 16384, ZH_EN, 6.7, None, ("code",)),
    Family(r"code-?llama.*34b", 16384, ("en",), 34, None, ("code",)),
    Family(r"code-?llama", 16384, ("en",), 7, None, ("code",)),
    Family(r"qwen2(\.5)?.*coder", 32768, ZH_EN, 7, "chatml", ("code", "tools", "json")),
    Family(r"qwen2(\.5)?.*72b", 32768, MULTI, 72, "chatml", ("tools", "json")),
    Family(r"qwen2(\.5)?.*(1\.5b|0\.5b)", 32768, MULTI, 1.5, "chatml", ("tools", "json")),
    Family(r"qwen2(\.5)?", 32768, MULTI, 7, "chatml", ("tools", "json")),
    Family(r"llama-?3\.[123].*70b", 131072, ("en",), 70, "llama3", ("tools", "json"), ("zh",)),
    Family(r"llama-?3\.[123]", 131072, ("en",), 8, "llama3", ("tools", "json"), ("zh",)),
    Family(r"llama-?3.*70b", 8192, ("en",), 70, "llama3", ("json",), ("zh",)),
    Family(r"llama-?3", 8192, ("en",), 8, "llama3", ("json",), ("zh",)),
    Family(r"mixtral", 32768, ("en", "fr", "de", "es", "it"), 47, None, ("tools",)),
    Family(r"mistral", 32768, ("en",), 7, None, ("tools",)),
)


def lookup(name: str, extra: Iterable[Any] = ()) -> ModelInfo | None:
    """Catalogue metadata for a model name, or None when no family matches.

    ``extra`` are config entries (``router.catalogue``: objects with ``pattern`` and optional
    fields); a matching one is applied over the built-in family (or over nothing).
    """
    base: ModelInfo | None = None
    for fam in FAMILIES:
        if fam.regex.search(name):
            base = ModelInfo(
                name=name,
                context_length=fam.context_length,
                languages=fam.languages,
                capabilities=fam.capabilities,
                cost=fam.cost,
                prompt_format=fam.prompt_format,
                extra={"family": fam.pattern, "partial_languages": fam.partial_languages},
            )
            break
    for entry in extra:
        if re.search(entry.pattern, name, re.IGNORECASE):
            base = _apply(base or ModelInfo(name=name), _set_fields(entry, ("pattern",)))
            break
    return base


def _set_fields(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Fields explicitly given (pydantic ``model_fields_set``) and not None."""
    names = getattr(obj, "model_fields_set", None)
    if names is None:
        names = obj.keys() if isinstance(obj, Mapping) else ()
    get: Callable[[str], Any] = (
        obj.get if isinstance(obj, Mapping) else (lambda k: getattr(obj, k, None))
    )
    return {k: get(k) for k in names if k not in skip and get(k) is not None}


_TUPLE_FIELDS = ("languages", "capabilities", "fallback", "aliases")
_INFO_FIELDS = ("context_length", "cost", "prompt_format", "supports_continuation", "quantization")


def _apply(info: ModelInfo, fields: Mapping[str, Any]) -> ModelInfo:
    changes: dict[str, Any] = {}
    for key, value in fields.items():
        if key in _TUPLE_FIELDS:
            changes[key] = tuple(value)
        elif key in _INFO_FIELDS:
            changes[key] = value
    return replace(info, **changes)


def _from_meta(meta: Mapping[str, str]) -> dict[str, Any]:
    """Backend-reported metadata (Consul service meta is all strings)."""
    out: dict[str, Any] = {}
    if meta.get("context_length", "").isdigit():
        out["context_length"] = int(meta["context_length"])
    for key in ("languages", "capabilities"):
        if meta.get(key):
            out[key] = [s.strip() for s in meta[key].split(",") if s.strip()]
    if meta.get("prompt_format"):
        out["prompt_format"] = meta["prompt_format"]
    if meta.get("quantization"):
        out["quantization"] = meta["quantization"]
    return out


def model_info(
    name: str,
    *,
    config: Any = None,
    backends: Iterable[Backend] = (),
    extra: Iterable[Any] = (),
) -> ModelInfo:
    """Everything known about one model, with the precedence in the module docstring."""
    info = lookup(name) or ModelInfo(name=name)
    for b in backends:
        if b.model == name and b.meta:
            info = _apply(info, _from_meta(b.meta))
    for entry in extra:
        if re.search(entry.pattern, name, re.IGNORECASE):
            info = _apply(info, _set_fields(entry, ("pattern",)))
            break
    if config is not None:
        info = _apply(info, _set_fields(config))
    return info


def resolve_models(settings: Any, backends: Iterable[Backend] = ()) -> dict[str, ModelInfo]:
    """``ModelInfo`` for every model in config (``models``, ``backends``) and discovery.

    The gateway passes the result to ``select_model`` as ``models``.
    """
    backends = list(backends)
    configured: Mapping[str, Any] = getattr(settings, "models", {}) or {}
    names = dict.fromkeys(
        [
            *configured,
            *(b.model for b in getattr(settings, "backends", ()) or ()),
            *(b.model for b in backends),
        ]
    )
    extra = getattr(getattr(settings, "router", None), "catalogue", ()) or ()
    return {
        n: model_info(n, config=configured.get(n), backends=backends, extra=extra) for n in names
    }


def partial_languages(info: ModelInfo) -> tuple[str, ...]:
    return tuple(info.extra.get("partial_languages", ()))


def fill(info: ModelInfo, extra: Iterable[Any] = ()) -> ModelInfo:
    """``info`` with what it leaves unset (no context length, no languages, default cost…)
    taken from the catalogue; for callers that hold ModelInfo built from config alone."""
    known = lookup(info.name, extra)
    if known is None:
        return info
    changes: dict[str, Any] = {}
    if info.context_length is None:
        changes["context_length"] = known.context_length
    for key in ("languages", "capabilities"):
        if not getattr(info, key):
            changes[key] = getattr(known, key)
    if info.cost == 1.0:
        changes["cost"] = known.cost
    if info.prompt_format is None:
        changes["prompt_format"] = known.prompt_format
    if "partial_languages" not in info.extra and known.extra.get("partial_languages"):
        changes["extra"] = {**info.extra, "partial_languages": known.extra["partial_languages"]}
    return replace(info, **changes)
