"""ACLs of the double (contract §2.4, §11): tokens with prefix rules on ``service``, ``node``
and ``key``; 403 for writes and single-object reads, silent filtering for list reads, local
tokens stripped across datacenters."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from aiohttp import web

from tests.consul_double.util import ConsulHTTPError

ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"
_LEVEL = {"deny": 0, "read": 1, "list": 1, "write": 2}


@dataclass(slots=True)
class Token:
    """``rules`` maps a resource (service, node, key) to {name prefix: deny|read|write};
    the longest matching prefix wins, no match falls back to the default policy."""

    secret: str
    rules: dict[str, dict[str, str]] = field(default_factory=dict)
    accessor: str = field(default_factory=lambda: str(uuid.uuid4()))
    management: bool = False
    local: bool = False
    datacenter: str = "dc1"


@dataclass(slots=True)
class ACLConfig:
    enabled: bool = False
    default_policy: str = "allow"
    tokens: dict[str, Token] = field(default_factory=dict)
    anonymous_rules: dict[str, dict[str, str]] = field(default_factory=dict)

    def add_token(
        self,
        secret: str,
        rules: dict[str, dict[str, str]] | None = None,
        *,
        management: bool = False,
        local: bool = False,
        datacenter: str = "dc1",
    ) -> Token:
        tok = Token(secret, rules or {}, management=management, local=local, datacenter=datacenter)
        self.tokens[secret] = tok
        return tok


class Authz:
    """What one request may do, after token resolution."""

    def __init__(self, config: ACLConfig, token: Token | None, presented: bool) -> None:
        self.config, self.token = config, token
        self.presented = presented  # a non-anonymous token was presented (for the filtered header)

    @property
    def accessor(self) -> str:
        return self.token.accessor if self.token else ANONYMOUS_ACCESSOR

    def allowed(self, resource: str, name: str, level: str) -> bool:
        if not self.config.enabled or (self.token is not None and self.token.management):
            return True
        rules = self.token.rules if self.token is not None else self.config.anonymous_rules
        best: str | None = None
        for prefix in rules.get(resource, {}):
            if name.startswith(prefix) and (best is None or len(prefix) > len(best)):
                best = prefix
        if best is None:
            return self.config.default_policy == "allow"
        return _LEVEL[rules[resource][best]] >= _LEVEL[level]

    def require(self, resource: str, name: str, level: str) -> None:
        if not self.allowed(resource, name, level):
            raise ConsulHTTPError(
                403,
                f"Permission denied: token with AccessorID '{self.accessor}' lacks permission "
                f"'{resource}:{level}' on \"{name}\"",
            )


def request_token(request: web.Request, agent_default: str | None) -> str | None:
    """Resolution order of §2.4."""
    if request.query.get("token"):
        return request.query["token"]
    if request.headers.get("X-Consul-Token"):
        return request.headers["X-Consul-Token"]
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return auth[7:].strip()
    return agent_default or None


def authorize(
    config: ACLConfig, request: web.Request, *, agent_default: str | None, target_dc: str
) -> Authz:
    """Resolve the request's token; unknown token → 403 ``ACL not found``."""
    if not config.enabled:
        return Authz(config, None, False)
    secret = request_token(request, agent_default)
    if not secret or secret == "anonymous":
        return Authz(config, None, False)
    tok = config.tokens.get(secret)
    if tok is None:
        raise ConsulHTTPError(403, "ACL not found")
    if tok.local and target_dc != tok.datacenter:
        # §11.3: a local token is stripped when the request is forwarded to another DC.
        return Authz(config, None, True)
    return Authz(config, tok, True)
