"""Incremental detokenization gives the text a full decode gives, one token at a time."""

from __future__ import annotations

import random
from typing import Any

import pytest

from switchgear.worker.generation import IncrementalText
from switchgear.worker.tiny import build_tokenizer

TEXT = "你好，今天天气怎么样？ The quick brown fox 🦊 jumps — «über» naïve 😀  two  spaces\n ok. "


def sentencepiece_like() -> Any:
    """Metaspace pre-tokenizer, byte fallback and a decoder that strips the leading space:
    the shape of Llama 2's and Baichuan's tokenizers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tok.train_from_iterator(
        [TEXT] * 5, trainers.BpeTrainer(vocab_size=800, special_tokens=specials)
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>")


@pytest.fixture(scope="module", params=["mixed", "english", "sentencepiece"])
def tokenizer(request: pytest.FixtureRequest) -> Any:
    if request.param == "sentencepiece":
        return sentencepiece_like()
    return build_tokenizer(1024, request.param)


@pytest.mark.parametrize("ids_from", ["text", "random"])
def test_token_by_token_matches_a_full_decode(tokenizer: Any, ids_from: str) -> None:
    rng = random.Random(0)
    ids = (
        tokenizer(TEXT * 8)["input_ids"]
        if ids_from == "text"
        else [rng.randrange(len(tokenizer)) for _ in range(300)]
    )
    inc = IncrementalText()
    for n in range(1, len(ids) + 1):
        seen = inc.update(tokenizer, ids[:n])
        full = tokenizer.decode(ids[:n], skip_special_tokens=True)
        assert full.startswith(inc.text), n  # what is committed is never taken back
        assert seen == full, n
    assert inc.read_at > len(ids) - 10  # the window stayed short
