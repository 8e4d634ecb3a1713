"""The Responses API (``POST /v1/responses``) over the gateway's chat-completions path.

A Responses request is checked and translated once, at the edge, into a chat-completions
request (:mod:`.request`); from then on it is a chat request like any other: routed, retried,
failed over to the fallback chain and continued mid-stream by the same code. Only the answer
is turned back: a ``chat.completion`` body into a ``response`` object (:mod:`.answer`), a
stream of chat chunks into Responses events (:mod:`.events`).

Backends that speak the Responses API themselves (``supports_responses`` in their meta) get
the client's body as it was sent, and their answer or events reach the client unchanged.
"""

from __future__ import annotations

from switchgear.proxy.responses.answer import as_response
from switchgear.proxy.responses.events import ResponseEvents
from switchgear.proxy.responses.request import (
    PATH,
    goes_native,
    native_body,
    speaks_responses,
    to_chat,
    validate,
)
from switchgear.proxy.responses.schema import SCHEMA

__all__ = [
    "PATH",
    "SCHEMA",
    "ResponseEvents",
    "as_response",
    "goes_native",
    "native_body",
    "speaks_responses",
    "to_chat",
    "validate",
]
