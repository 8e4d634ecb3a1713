"""Wire-level helpers of the Consul double: request-key matching, Go durations, query flags,
plain-text errors and the Go-canonical response header names (contract §2)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

# Go's canonical spelling (textproto.CanonicalMIMEHeaderKey), not the documented one (§2.5).
H_INDEX = "X-Consul-Index"
H_KNOWN_LEADER = "X-Consul-Knownleader"
H_LAST_CONTACT = "X-Consul-Lastcontact"
H_CONSISTENCY = "X-Consul-Effective-Consistency"
H_DEFAULT_POLICY = "X-Consul-Default-Acl-Policy"
H_FILTERED = "X-Consul-Results-Filtered-By-Acls"

PRESENCE_FLAGS = frozenset(
    {
        "recurse",
        "keys",
        "raw",
        "stale",
        "consistent",
        "leader",
        "cached",
        "pretty",
        "replace-existing-checks",
    }
)

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DUR_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


class DurationError(ValueError):
    pass


def parse_duration(value: Any) -> float:
    """A Go duration (string, or a JSON number meaning nanoseconds) in seconds."""
    if isinstance(value, bool):
        raise DurationError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        return float(value) * 1e-9
    if not isinstance(value, str):
        raise DurationError(f"invalid duration {value!r}")
    s = value.strip()
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise DurationError(f'time: invalid duration "{value}"')
    pos, total = 0, 0.0
    for m in _DUR_PART.finditer(s):
        if m.start() != pos:
            raise DurationError(f'time: invalid duration "{value}"')
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s):
        raise DurationError(f'time: invalid duration "{value}"')
    return sign * total


def format_duration(seconds: float) -> str:
    if seconds <= 0:
        return ""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    if whole == seconds and whole % 60 == 0:
        return f"{whole // 60}m0s"
    return f"{seconds:g}s"


def norm_key(key: str) -> str:
    return key.lower().replace("_", "")


class Fields:
    """Case-insensitive, underscore-insensitive view of one JSON object's top-level keys (§2.2).

    Only the struct's own keys are normalised; values (user maps such as ``Meta``) are
    returned untouched.
    """

    def __init__(self, body: Mapping[str, Any] | None) -> None:
        self._d: dict[str, Any] = {}
        for k, v in (body or {}).items():
            self._d.setdefault(norm_key(str(k)), v)

    def get(self, *names: str, default: Any = None) -> Any:
        for name in names:
            key = norm_key(name)
            if key in self._d and self._d[key] is not None:
                return self._d[key]
        return default

    def has(self, name: str) -> bool:
        return norm_key(name) in self._d

    def __bool__(self) -> bool:
        return bool(self._d)


def text_error(status: int, text: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, text=text, content_type="text/plain", charset="utf-8", headers=headers
    )


class ConsulHTTPError(Exception):
    """Raised by handlers; rendered as a plain-text error (§2.6)."""

    def __init__(self, status: int, text: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(text)
        self.status, self.text, self.headers = status, text, dict(headers or {})


def bad_request(text: str) -> ConsulHTTPError:
    return ConsulHTTPError(400, text)


def json_response(
    data: Any, headers: Mapping[str, str] | None = None, status: int = 200
) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(data), content_type="application/json", headers=headers
    )


def flag(request: web.Request, name: str) -> bool:
    """Presence flag: any value, even ``false``, means on (§2.3)."""
    return name in request.query


_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def parse_passing(request: web.Request) -> bool:
    if "passing" not in request.query:
        return False
    value = request.query["passing"]
    if value == "" or value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise bad_request("Invalid value for ?passing")


def check_consistency(request: web.Request) -> str:
    if flag(request, "stale") and flag(request, "consistent"):
        raise bad_request("Cannot specify ?stale with ?consistent, conflicting semantics.")
    if flag(request, "stale"):
        return "stale"
    if flag(request, "consistent"):
        return "consistent"
    return "leader"


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"Request decode failed: {exc}") from None


def reject_newline(*names: str) -> None:
    for name in names:
        if "\n" in name:
            raise bad_request("Invalid name: contains a line feed")
