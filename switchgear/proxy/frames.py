"""How a relayed stream is framed for the client: chat SSE, or another API's events.

The relay (:mod:`switchgear.proxy.relay`) decodes upstream chunks into OpenAI chat chunks and
hands each, once it is final, to a :class:`Frames`; what the client receives is whatever
bytes the frames make of it. :class:`ChatFrames` is the chat and completions wire format
(``data: {chunk}`` lines, ``data: [DONE]`` at the end, an in-band ``{"error": …}``);
the Responses API has its own (:class:`switchgear.proxy.responses.ResponseEvents`).
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

DONE = b"data: [DONE]\n\n"


class Frames(Protocol):
    """The bytes of one client stream. Each method may return ``b""`` (nothing to send)."""

    def chunk(self, chunk: dict[str, Any]) -> bytes:
        """The frames for one chunk as relayed (after ``rewrite_response``)."""
        ...

    def done(self) -> bytes:
        """The end of a complete stream."""
        ...

    def error(self, error: dict[str, Any]) -> bytes:
        """An in-band error (an OpenAI error body) ending a stream that failed."""
        ...


class ChatFrames:
    """The chat-completions (and completions) stream: SSE ``data:`` lines and ``[DONE]``."""

    __slots__ = ()

    def chunk(self, chunk: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def done(self) -> bytes:
        return DONE

    def error(self, error: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(error) + b"\n\n"


CHAT_FRAMES = ChatFrames()
