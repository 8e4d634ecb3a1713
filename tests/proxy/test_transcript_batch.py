"""``Transcript.record_all`` notes a read's chunks as ``record`` does each of them."""

from __future__ import annotations

from typing import Any

from switchgear.proxy.resume import Transcript


def chunk(choices: Any = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": "c1", "created": 7, "model": "m1", **extra}
    if choices is not None:
        out["choices"] = choices
    return out


def delta(content: Any = None, index: Any = 0, finish: Any = None, **more: Any) -> dict[str, Any]:
    d: dict[str, Any] = {**more}
    if content is not None:
        d["content"] = content
    return {"index": index, "delta": d, "finish_reason": finish}


CHUNKS: list[dict[str, Any]] = [
    chunk([delta(role="assistant", content="")]),
    chunk([delta("Hel")]),
    chunk([delta("lo")]),
    chunk([{"delta": {"content": " no index"}}]),
    chunk([delta("", reasoning_content="thinking")]),
    chunk([delta(None, tool_calls=None)]),
    chunk([delta(" x")], usage=None),
    chunk([delta(5)]),
    chunk([delta(" second", index=1)]),
    chunk([delta(" none", index=None)]),
    chunk([delta(" a"), delta(" b", index=1)]),
    chunk(["not a choice"]),
    chunk([{"index": 0, "delta": "not a delta"}]),
    chunk([]),
    chunk("not a list"),
    chunk([delta(None, tool_calls=[{"index": 0, "function": {"name": "f"}}])]),
    chunk([delta(" done", finish="stop")]),
    chunk([], usage={"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}),
    chunk(None, type="response.completed", response={"usage": {"total_tokens": 4}}),
]


def test_record_all_equals_record_of_each_chunk() -> None:
    for start in range(len(CHUNKS)):  # every chunk also as the first one of a stream
        chunks = CHUNKS[start:] + CHUNKS[:start]
        one, batched = Transcript(), Transcript()
        for c in chunks:
            one.record(c)
        with_choices = batched.record_all(chunks[:5]) + batched.record_all(chunks[5:])
        assert batched == one
        assert with_choices == sum(1 for c in chunks if c.get("choices"))


def test_plain_content_chunks_make_the_text_and_the_count() -> None:
    t = Transcript()
    assert t.record_all([chunk([delta("a")]), chunk([delta("b")]), chunk([delta("c")])]) == 3
    assert (t.text, t.tokens, t.id, t.resumable, t.finished) == ("abc", 3, "c1", True, set())
