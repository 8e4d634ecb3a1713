"""``switchgear model make-tiny``: a small random-weight model that loads like a real one.

The tokenizer is a byte-level BPE trained on a fixed mixed Chinese/English corpus, so two
tiny models with the same ``vocab`` share a vocabulary whatever their seed (the hot-swap
tests rely on that), while ``seed`` changes the weights. ``tokenizer="english"`` trains the
BPE on the English half only: a genuinely different vocabulary and merges (Chinese falls back
to bytes) at the same ``vocab`` size, for testing the tokenizer gate. Everything is written with
``save_pretrained`` (or as a ``.pt`` state dict / an ONNX export) so loading it goes through
exactly the code path of a real checkpoint.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

log = logging.getLogger("switchgear.worker.tiny")

Arch = Literal["llama", "gpt2"]
Format = Literal["safetensors", "bin", "pt", "onnx"]
TokenizerKind = Literal["mixed", "english"]

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
# ChatML, without tools (kept for models whose template cannot take tools).
PLAIN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# ChatML with tools: the tool list in a system turn, calls as JSON in <tool_call> tags,
# results in "tool" turns (the generic JSON form of switchgear.worker.tools).
CHAT_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n"
    "{% if messages and messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}\n\n"
    "{% endif %}# Tools\nYou may call one or more of these functions:\n<tools>\n"
    "{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}</tools>\n"
    'For each call, answer <tool_call>{"name": <name>, "arguments": <object>}</tool_call>'
    "<|im_end|>\n{% endif -%}"
    "{% for message in messages %}"
    "{% if not (tools and loop.first and message['role'] == 'system') %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] %}{{ message['content'] }}"
    "{% endif %}{% for call in message.get('tool_calls') or [] %}"
    '<tool_call>{"name": {{ call.function.name | tojson }}, "arguments": '
    "{{ call.function.arguments }}}</tool_call>{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CONTEXT_LENGTH = 512

_ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "Machine learning models are served behind an OpenAI compatible gateway.",
    "Hello, how are you today? I am fine, thank you.",
    "Translate the following sentence into Chinese, please.",
    "A hot swap loads the new model beside the old one and verifies it first.",
    "Latency, throughput and memory are watched by the anomaly detector.",
    "Please summarize this paragraph in one short sentence.",
    "The weather is sunny and warm, a good day for a walk in the park.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000; dates like 2024-05-01.",
    "def add(a, b):\n    return a + b\n",
]
_CHINESE = [
    "你好，今天天气怎么样？",
    "我喜欢机器学习和自然语言处理。",
    "请把这句话翻译成英文。",
    "模型热切换之前需要先验证权重和输出。",
    "北京是中国的首都，上海是一个大城市。",
    "这个网关可以把请求路由到不同的模型。",
    "谢谢你的帮助，我们明天见。",
    "延迟、吞吐量和内存都由异常检测器监控。",
]


def corpus(kind: TokenizerKind = "mixed") -> list[str]:
    """The fixed training text: every sentence alone and in mixed pairs."""
    if kind == "english":
        return _ENGLISH * 20 + [f"{a} {b}" for a in _ENGLISH for b in _ENGLISH] * 2
    lines = _ENGLISH + _CHINESE
    mixed = [f"{e} {c}" for e in _ENGLISH for c in _CHINESE]
    return lines * 20 + mixed * 4


@dataclass(frozen=True, slots=True)
class TinySpec:
    arch: Arch = "llama"
    seed: int = 0
    layers: int = 2
    hidden: int = 64
    vocab: int = 1024
    fmt: Format = "safetensors"
    tokenizer: TokenizerKind = "mixed"
    tools: bool = True  # False: the plain ChatML template, which cannot take tools


def build_tokenizer(
    vocab: int, kind: TokenizerKind = "mixed", tools: bool = True
) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(kind), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token=None,
        pad_token="<pad>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=CONTEXT_LENGTH,
        model_input_names=["input_ids", "attention_mask"],
    )
    fast.chat_template = CHAT_TEMPLATE if tools else PLAIN_CHAT_TEMPLATE
    return fast


def build_model(spec: TinySpec, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    import torch
    from transformers import (
        AutoModelForCausalLM,
        GenerationConfig,
        GPT2Config,
        LlamaConfig,
        PretrainedConfig,
    )

    vocab = max(spec.vocab, len(tokenizer))
    heads = max(1, spec.hidden // 64) if spec.hidden >= 256 else 4
    ids = dict(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config: PretrainedConfig
    if spec.arch == "llama":
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=spec.hidden,
            intermediate_size=spec.hidden * 2,
            num_hidden_layers=spec.layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=CONTEXT_LENGTH,
            tie_word_embeddings=False,
            **ids,
        )
    else:
        config = GPT2Config(
            vocab_size=vocab,
            n_embd=spec.hidden,
            n_layer=spec.layers,
            n_head=heads,
            n_positions=CONTEXT_LENGTH,
            **ids,
        )
    torch.manual_seed(spec.seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    tiny: PreTrainedModel = model.eval()
    return tiny


def make_tiny(out_dir: str | Path, spec: TinySpec = TinySpec()) -> Path:
    """Write a tiny model to ``out_dir`` in ``spec.fmt``; returns the directory."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(spec.vocab, spec.tokenizer, spec.tools)
    model = build_model(spec, tokenizer)
    if spec.fmt == "safetensors":
        model.save_pretrained(out)
    elif spec.fmt == "bin":
        model.save_pretrained(out, safe_serialization=False)
    elif spec.fmt == "pt":
        model.config.save_pretrained(out)
        assert model.generation_config is not None  # build_model sets it
        model.generation_config.save_pretrained(out)
        torch.save(model.state_dict(), out / "model.pt")
    else:
        from switchgear.worker.onnx import export_onnx

        export_onnx(model, tokenizer, out)
    tokenizer.save_pretrained(out)
    return out


def make_tiny_cli(
    out_dir: str,
    arch: str = "llama",
    seed: int = 0,
    layers: int = 2,
    hidden: int = 64,
    vocab: int = 1024,
    fmt: str = "safetensors",
    tokenizer: str = "mixed",
) -> int:
    spec = TinySpec(
        arch=arch,  # type: ignore[arg-type]
        seed=seed,
        layers=layers,
        hidden=hidden,
        vocab=vocab,
        fmt=fmt,  # type: ignore[arg-type]
        tokenizer=tokenizer,  # type: ignore[arg-type]
    )
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / "config.json").exists():
        print(f"error: {out} exists and is not a model directory", flush=True)
        return 2
    if (out / "config.json").exists():
        shutil.rmtree(out)
    make_tiny(out, spec)
    print(
        f"wrote a tiny {spec.arch} model ({spec.layers} layers, hidden {spec.hidden}, "
        f"{spec.fmt}, {spec.tokenizer} tokenizer) to {out}"
    )
    return 0
