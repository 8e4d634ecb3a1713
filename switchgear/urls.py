"""Which backend URLs may be registered: patterns, IP normalisation and forbidden ranges.

A URL is matched against ``external_backends.url_patterns`` after its host is normalised:
IP literals in any spelling the resolver accepts (``0x7f000001``, ``2130706433``,
``127.1``, ``[::ffff:127.0.0.1]``) become one canonical address first, so a spelling cannot
slip past a pattern. Host patterns match whole labels: ``*`` is one or more labels
(``*.example.com``), other labels are globs inside one label (``web-*``); a pattern whose
labels are all numbers or ``*`` (``10.*``) matches IPv4 addresses only.

Loopback, private, link-local, unspecified and cloud metadata destinations are refused
unless the matching pattern names them explicitly, that is its host's first label is a
literal (``http://10.*``, ``http://127.0.0.1:*``, ``http://[::1]``): ``http://*`` never
reaches them. Names are not resolved here; a name that resolves to a private address is
the resolver's business (keep such names out of the patterns).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_HOSTS = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)


class URLRefused(ValueError):
    """A URL or path that must not be registered; the message says why."""


@dataclass(frozen=True, slots=True)
class Pattern:
    scheme: str
    host: str  # lower-case glob, or a canonical IP literal
    port: str  # glob; "*" when the pattern names none
    path: str  # glob; "*" when the pattern names none
    ip: IPAddress | None  # the pattern's host is an exact IP literal

    @property
    def explicit(self) -> bool:
        """Does the pattern name its host (its first label is not a wildcard)?"""
        if self.ip is not None:
            return True
        first = self.host.split(".", 1)[0]
        return bool(first) and not any(c in first for c in "*?[")


def normalise_ip(host: str) -> IPAddress | None:
    """The address an IP literal denotes (any resolver spelling), or None for a name."""
    h = host.strip("[]").rstrip(".").lower()
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        ip = None
        if h and all(c in "0123456789abcdefx." for c in h):
            try:  # inet_aton takes what getaddrinfo takes: 0x7f000001, 2130706433, 127.1
                ip = ipaddress.IPv4Address(socket.inet_aton(h))
            except OSError:
                return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


# In order: the first that holds names the reason (a metadata address is also link-local).
_ADDRESS_REASONS: tuple[tuple[Callable[[IPAddress], bool], str], ...] = (
    (lambda ip: ip in METADATA_ADDRESSES, "a cloud metadata address"),
    (lambda ip: ip.is_loopback, "a loopback address"),
    (lambda ip: ip.is_link_local, "a link-local address"),
    (lambda ip: ip.is_unspecified or ip.is_multicast or ip.is_reserved, "not a unicast address"),
    (lambda ip: ip.is_private, "a private address"),
)


def _host_name_reason(host: str) -> str | None:
    name = host.rstrip(".").lower()
    if name in METADATA_HOSTS:
        return "a cloud metadata host"
    if name == "localhost" or name.endswith(".localhost"):
        return "a loopback host"
    return None


def forbidden_reason(host: str, ip: IPAddress | None) -> str | None:
    """Why a destination needs an explicit pattern (None: a public destination)."""
    if ip is None:
        return _host_name_reason(host)
    return next((reason for holds, reason in _ADDRESS_REASONS if holds(ip)), None)


def parse_pattern(pattern: str) -> Pattern:
    """``scheme://host[:port][/path]``; ValueError when it is not one."""
    scheme, sep, rest = pattern.partition("://")
    if not sep or scheme not in ("http", "https", "*"):
        raise ValueError(f"url pattern {pattern!r} must start with http://, https:// or *://")
    netloc, slash, path = rest.partition("/")
    if "@" in netloc or not netloc:
        raise ValueError(f"url pattern {pattern!r} needs a host and no credentials")
    if netloc.startswith("["):
        host, _, after = netloc[1:].partition("]")
        port = after[1:] if after.startswith(":") else "*"
    else:
        host, colon, port = netloc.partition(":")
        port = port if colon else "*"
    ip = normalise_ip(host) if not any(c in host for c in "*?[") else None
    return Pattern(
        scheme=scheme,
        host=str(ip) if ip is not None else host.lower(),
        port=port or "*",
        path=("/" + path) if slash else "*",
        ip=ip,
    )


def _labels_match(pattern: list[str], host: list[str]) -> bool:
    if not pattern:
        return not host
    head, rest = pattern[0], pattern[1:]
    if head == "*":  # one or more whole labels
        return any(_labels_match(rest, host[i:]) for i in range(1, len(host) + 1))
    return bool(host) and fnmatchcase(host[0], head) and _labels_match(rest, host[1:])


def _host_matches(p: Pattern, host: str, ip: IPAddress | None) -> bool:
    if p.ip is not None:
        return ip == p.ip
    labels = p.host.split(".")
    ipv4_pattern = all(lab == "*" or lab.isdigit() for lab in labels) and p.host != "*"
    if ipv4_pattern:
        if not isinstance(ip, ipaddress.IPv4Address):
            return False
        return _labels_match(labels, str(ip).split("."))
    if ip is not None:
        return p.host == "*"
    return _labels_match(labels, host.rstrip(".").lower().split("."))


def check_backend_url(url: str, patterns: list[str]) -> str:
    """Raise URLRefused unless ``url`` may be registered; returns the URL unchanged."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise URLRefused(f"must be an http(s) URL, not {url!r}")
    if "@" in parts.netloc:
        raise URLRefused("must not carry credentials")
    try:
        port = str(parts.port or (443 if parts.scheme == "https" else 80))
    except ValueError:
        raise URLRefused(f"has an invalid port: {url!r}") from None
    host = parts.hostname
    ip = normalise_ip(host)
    reason = forbidden_reason(host, ip)
    path = parts.path or "/"
    for p in map(parse_pattern, patterns):
        if p.scheme not in ("*", parts.scheme) or not fnmatchcase(port, p.port):
            continue
        if not _host_matches(p, host, ip) or not fnmatchcase(path, p.path):
            continue
        if reason is None or p.explicit:
            return url
    if reason is not None:
        shown = str(ip) if ip is not None else host
        raise URLRefused(
            f"{url!r} points at {shown}, {reason}; only a url_pattern naming it allows that"
        )
    raise URLRefused(f"{url!r} matches none of external_backends.url_patterns")


def check_health_path(path: str) -> str:
    """A health-check path must stay on the backend's host: ``/...``, no ``//``, ``@`` or scheme."""
    if (
        not path.startswith("/")
        or path.startswith("//")
        or "@" in path
        or "://" in path
        or "\\" in path
        or any(ord(c) < 0x21 for c in path)
    ):
        raise URLRefused(
            f"health_path must be a path starting with / on the backend's host, not {path!r}"
        )
    return path
