"""Who may call: the credentials a request carries, key checks, and the one loopback rule.

Gateway (``/v1`` and ``/admin`` middleware, dashboard) and worker (``/v1`` middleware,
``/admin`` routes) decide with these functions only, so they cannot disagree:

- :func:`bearer_token` reads ``Authorization: Bearer <key>``; :func:`basic_password` reads
  the password of ``Authorization: Basic`` (the browser's own prompt, for the dashboard).
- :func:`match_key` compares a token with *every* configured key, each in constant time
  (``hmac.compare_digest`` over SHA-256 digests, so neither the matching key nor a key's
  length shows in the timing), and never stops at the first match.
- :func:`is_loopback` is ``127.0.0.0/8``, ``::1`` and their IPv4-mapped forms, read from the
  peer address of the connection. Headers such as ``X-Forwarded-For`` are never consulted: a
  client can write them, and a proxy on the same host makes every client a loopback peer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
from collections.abc import Iterable, Mapping, Sequence

_NO_KEY = hashlib.sha256(b"switchgear: no key given").digest()


def encode_keys(keys: Iterable[str | None]) -> tuple[bytes, ...]:
    """Configured keys as the bytes :func:`match_key` compares (empty ones dropped)."""
    return tuple(k.encode() for k in keys if k)


def bearer_token(headers: Mapping[str, str]) -> bytes | None:
    """The key of ``Authorization: Bearer <key>`` (scheme case-insensitive), or None."""
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token.encode()


def basic_password(headers: Mapping[str, str]) -> bytes | None:
    """The password of ``Authorization: Basic base64(user:password)``, or None."""
    scheme, _, value = headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    _, sep, password = decoded.partition(b":")
    return password if sep and password else None


def match_key(token: bytes | None, keys: Sequence[bytes]) -> int | None:
    """Index of the key equal to ``token``, or None; every key is compared, in constant time."""
    given = hashlib.sha256(token).digest() if token is not None else _NO_KEY
    found = None
    for i, key in enumerate(keys):
        # Non-short-circuit: the loop does the same work whichever key (if any) matches.
        if hmac.compare_digest(given, hashlib.sha256(key).digest()) and token is not None:
            found = i
    return found


def is_loopback(remote: str | None) -> bool:
    """Whether a peer address is loopback: 127.0.0.0/8, ::1, or ::ffff:127.x.y.z."""
    try:
        ip = ipaddress.ip_address((remote or "").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback
