"""The catalogue of model families, and config overriding it."""

from __future__ import annotations

from switchgear.proxy import families as catalogue
from switchgear.settings import parse_settings
from switchgear.types import Backend


def test_known_families() -> None:
    glm = catalogue.lookup("THUDM/chatglm3-6b")
    assert glm and (glm.context_length, glm.languages, glm.prompt_format) == (
        8192,
        ("zh", "en"),
        "chatglm3",
    )
    assert catalogue.lookup("chatglm3-6b-32k").context_length == 32768  # type: ignore[union-attr]
    b7 = catalogue.lookup("baichuan2-7b-chat")
    assert b7 and (b7.context_length, b7.languages, b7.prompt_format) == (
        4096,
        ("zh", "en"),
        "baichuan2",
    )
    assert catalogue.lookup("Baichuan2-13B-Chat").cost > b7.cost  # type: ignore[union-attr]
    llama = catalogue.lookup("Meta-Llama-3-8B-Instruct")
    assert llama and (llama.context_length, llama.languages) == (8192, ("en",))
    assert catalogue.partial_languages(llama) == ("zh",)
    assert "code" in catalogue.lookup("deepseek-coder-6.7b-instruct").capabilities  # type: ignore[union-attr]
    assert catalogue.lookup("my-own-model") is None


def test_precedence_catalogue_backend_meta_config_patterns_config_models() -> None:
    settings = parse_settings(
        {
            "models": {"chatglm3-6b": {"context_length": 4000}, "mine": {"languages": ["fr"]}},
            "router": {
                "catalogue": [
                    {"pattern": "^mine$", "context_length": 2048, "prompt_format": "chatml"}
                ]
            },
            "backends": [{"model": "mine", "url": "http://127.0.0.1:1"}],
        }
    )
    backends = [
        Backend("b", "chatglm3-6b", "http://x", meta={"context_length": "6000", "languages": "zh"})
    ]
    infos = catalogue.resolve_models(settings, backends)
    glm = infos["chatglm3-6b"]
    assert glm.context_length == 4000  # config beats backend meta beats catalogue
    assert glm.languages == ("zh",)  # backend meta beats catalogue
    assert glm.prompt_format == "chatglm3"
    mine = infos["mine"]
    assert (mine.context_length, mine.prompt_format, mine.languages) == (2048, "chatml", ("fr",))
