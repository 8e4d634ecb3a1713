"""Problems a valid-looking file still has: references between sections, duplicates, cycles.

Pydantic checks each value; this module checks how values refer to each other, and returns
every problem at once (``config check`` prints them all, ``serve`` refuses to start on any
error). Each problem names the key it is about.

Models that may only appear at run time (Consul, a discovery plugin) cannot be known here:
with Consul enabled, a reference to an unknown model is a warning, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    reason: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


def backend_problems(settings: Any) -> list[Problem]:
    """Duplicate backends and duplicate explicit ids, naming both.

    A backend is identified by its explicit id when it has one, else by (model, URL): entries
    with distinct ids may share a model and URL (several replicas behind one address).
    """
    out: list[Problem] = []
    by_pair: dict[tuple[str, str], int] = {}
    by_id: dict[str, int] = {}
    for i, b in enumerate(settings.backends):
        pair = (b.model, b.url)
        if b.id is None and pair in by_pair:
            out.append(
                Problem(
                    f"backends[{i}]",
                    f"duplicates backends[{by_pair[pair]}]: the same model {b.model!r} "
                    f"at the same url {b.url!r}",
                )
            )
        elif b.id is None:
            by_pair[pair] = i
        if b.id is not None:
            if b.id in by_id:
                out.append(
                    Problem(
                        f"backends[{i}].id",
                        f"{b.id!r} is already the id of backends[{by_id[b.id]}]; ids must be unique",
                    )
                )
            else:
                by_id[b.id] = i
    return out


def known_models(settings: Any) -> set[str]:
    names = {b.model for b in settings.backends} | set(settings.models)
    for m in settings.models.values():
        names.update(m.aliases)
    names.update(settings.router.aliases)
    return names


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Each fallback cycle once, as the path that closes it (a → b → a)."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def walk(node: str, path: list[str]) -> None:
        for nxt in graph.get(node, ()):
            if nxt in path:
                cycle = path[path.index(nxt) :] + [nxt]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    found.append(cycle)
            elif len(path) < len(graph) + 1:
                walk(nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, [start])
    return found


def reference_problems(settings: Any) -> list[Problem]:
    """Fallback targets, fallback cycles and router targets that name no known model."""
    known = known_models(settings)
    dynamic = settings.consul is not None and getattr(settings.consul, "enabled", True)
    severity = "warning" if dynamic else "error"
    hint = " (not served by a static backend nor declared under models)"
    out: list[Problem] = []

    def ref(path: str, name: str | None) -> None:
        if name is not None and name not in known:
            out.append(Problem(path, f"unknown model {name!r}{hint}", severity))

    for name, m in settings.models.items():
        for j, target in enumerate(m.fallback):
            ref(f"models.{name}.fallback[{j}]", target)
    graph = {name: list(m.fallback) for name, m in settings.models.items()}
    for cycle in _cycles(graph):
        out.append(Problem(f"models.{cycle[0]}.fallback", "fallback cycle: " + " -> ".join(cycle)))
    router = settings.router
    for i, rule in enumerate(router.rules):
        ref(f"router.rules[{i}].model", rule.model)
        for j, target in enumerate(rule.models):
            ref(f"router.rules[{i}].models[{j}]", target)
    ref("router.default", router.default)
    for j, target in enumerate(router.candidates):
        ref(f"router.candidates[{j}]", target)
    for i, c in enumerate(router.canary):
        ref(f"router.canary[{i}].model", c.model)
        ref(f"router.canary[{i}].candidate", c.candidate)
    return out


def settings_problems(settings: Any) -> list[Problem]:
    """Every problem found from the settings alone (no plugins consulted)."""
    return backend_problems(settings) + reference_problems(settings)
