"""Per-datacenter server state: Raft index, catalog (nodes, services, checks), KV, servers
with coordinates and the ``reachable`` switch (contract §1, §3.2, §5, §9).

Every write bumps the DC's index, stamps the rows it touched and wakes blocking queries by
replacing :attr:`Datacenter.changed`.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

SERF_CHECK = "serfHealth"


@dataclass(slots=True)
class CatalogNode:
    name: str
    address: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    meta: dict[str, str] = field(default_factory=lambda: {"consul-network-segment": ""})
    create_index: int = 0
    modify_index: int = 0


@dataclass(slots=True)
class CatalogService:
    node: str
    id: str
    service: str
    tags: list[str] = field(default_factory=list)
    address: str = ""
    port: int = 0
    meta: dict[str, str] = field(default_factory=dict)
    tagged_addresses: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=lambda: {"Passing": 1, "Warning": 1})
    enable_tag_override: bool = False
    create_index: int = 0
    modify_index: int = 0

    def same_as(self, other: CatalogService) -> bool:
        a = replace(self, create_index=0, modify_index=0)
        b = replace(other, create_index=0, modify_index=0)
        return a == b


@dataclass(slots=True)
class CatalogCheck:
    node: str
    check_id: str
    name: str
    status: str = "critical"
    notes: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""
    service_tags: list[str] = field(default_factory=list)
    type: str = ""
    interval: str = ""
    timeout: str = ""
    create_index: int = 0
    modify_index: int = 0

    def definition(self) -> tuple[Any, ...]:
        return (
            self.name,
            self.status,
            self.notes,
            self.service_id,
            self.service_name,
            tuple(self.service_tags),
            self.type,
            self.interval,
            self.timeout,
        )


@dataclass(slots=True)
class KVEntry:
    key: str
    value: bytes
    flags: int = 0
    create_index: int = 0
    modify_index: int = 0
    lock_index: int = 0
    session: str = ""


@dataclass(slots=True)
class Server:
    name: str
    vec: tuple[float, ...] = (0.0,) * 8
    height: float = 1e-5
    adjustment: float = 0.0


def rtt(a: Server, b: Server) -> float:
    """Contract §8.2."""
    d = math.dist(a.vec, b.vec) + a.height + b.height
    adj = d + a.adjustment + b.adjustment
    return adj if adj > 0 else d


class Datacenter:
    """One datacenter's servers: everything here is that DC's own, including its index space."""

    def __init__(
        self, name: str, *, position: float | None = 0.0, servers: int = 1, start_index: int = 1
    ) -> None:
        self.name = name
        self.index = start_index
        self.reachable = True
        self.nodes: dict[str, CatalogNode] = {}
        self.services: dict[tuple[str, str], CatalogService] = {}
        self.checks: dict[tuple[str, str], CatalogCheck] = {}
        self.service_index: dict[str, int] = {}
        self.extinction_index = 0
        self.services_table_index = 0
        self.nodes_table_index = 0
        self.kv: dict[str, KVEntry] = {}
        self.kv_tombstones: dict[str, int] = {}
        self.kv_table_index = 0
        self.changed = asyncio.Event()
        self.queries: dict[str, Any] = {}  # prepared queries created in this DC (query_routes)
        self.servers: list[Server] = []
        for i in range(servers):
            vec = (0.0,) * 8 if position is None else (position,) + (0.0,) * 7
            self.servers.append(Server(f"server-{i + 1}.{name}", vec))
        self.has_coordinates = position is not None
        for srv in self.servers:
            self.upsert_node(srv.name, "127.0.0.1")
            self.write_node_state(
                srv.name,
                [CatalogService(srv.name, "consul", "consul", port=8300)],
                [],
                replace_all=True,
            )

    # --- index and notification ---------------------------------------------------------

    def bump(self) -> int:
        self.index += 1
        return self.index

    def notify(self) -> None:
        ev, self.changed = self.changed, asyncio.Event()
        ev.set()

    def reset_index(self, value: int) -> None:
        """Test control: lower the index space (snapshot restore) so clients see it go backwards."""
        value = max(value, 1)
        self.index = value
        for rows in (
            self.nodes.values(),
            self.services.values(),
            self.checks.values(),
            self.kv.values(),
        ):
            for row in rows:
                row.create_index = min(row.create_index, value)
                row.modify_index = min(row.modify_index, value)
        self.service_index = {k: min(v, value) for k, v in self.service_index.items()}
        self.kv_tombstones = {k: min(v, value) for k, v in self.kv_tombstones.items()}
        self.extinction_index = min(self.extinction_index, value)
        self.services_table_index = min(self.services_table_index, value)
        self.nodes_table_index = min(self.nodes_table_index, value)
        self.kv_table_index = min(self.kv_table_index, value)
        self.notify()

    # --- catalog writes -----------------------------------------------------------------

    def upsert_node(self, name: str, address: str) -> None:
        node = self.nodes.get(name)
        if node is not None and node.address == address:
            return
        idx = self.bump()
        if node is None:
            node = CatalogNode(name, address, create_index=idx)
            self.nodes[name] = node
            self.checks[(name, SERF_CHECK)] = CatalogCheck(
                name,
                SERF_CHECK,
                "Serf Health Status",
                "passing",
                output="Agent alive and reachable",
                create_index=idx,
                modify_index=idx,
            )
        node.address, node.modify_index = address, idx
        self.nodes_table_index = idx
        self._touch_node_services(name, idx)
        self.notify()

    def set_serf(self, node: str, status: str) -> None:
        chk = self.checks.get((node, SERF_CHECK))
        if chk is None or chk.status == status:
            return
        idx = self.bump()
        chk.status, chk.modify_index = status, idx
        chk.output = (
            "Agent alive and reachable" if status == "passing" else "Agent not live or unreachable"
        )
        self._touch_node_services(node, idx)
        self.notify()

    def write_node_state(
        self,
        node: str,
        services: list[CatalogService],
        checks: list[CatalogCheck],
        *,
        replace_all: bool,
        push_output: bool = False,
    ) -> bool:
        """Anti-entropy: make the node's service/check rows equal to what the agent holds.

        Output-only check changes are not pushed unless ``push_output`` (§5.1).
        Returns whether anything changed (one Raft write for the whole sync).
        """
        touched: set[str] = set()
        idx = self.index + 1
        services_changed = self._sync_services(node, services, idx, touched, replace_all)
        checks_changed = self._sync_checks(node, checks, idx, touched, replace_all, push_output)
        if not (services_changed or checks_changed):
            return False
        self.bump()
        self.services_table_index = idx
        for name in touched:
            if name:
                self.service_index[name] = idx
        if any(name and not self.instances(name) for name in touched):
            self.extinction_index = idx
        self.notify()
        return True

    def _sync_services(
        self,
        node: str,
        services: list[CatalogService],
        idx: int,
        touched: set[str],
        replace_all: bool,
    ) -> bool:
        """:meth:`write_node_state` for services; names of changed ones go into ``touched``."""
        changed = False
        want_svcs = {s.id: s for s in services}
        for (n, sid), row in list(self.services.items()):
            if n == node and sid not in want_svcs and replace_all:
                del self.services[(n, sid)]
                touched.add(row.service)
                changed = True
        for sid, svc in want_svcs.items():
            old = self.services.get((node, sid))
            if old is not None and old.same_as(svc):
                continue
            svc.create_index = old.create_index if old else idx
            svc.modify_index = idx
            self.services[(node, sid)] = svc
            touched.add(svc.service)
            if old is not None:
                touched.add(old.service)
            changed = True
        return changed

    def _sync_checks(
        self,
        node: str,
        checks: list[CatalogCheck],
        idx: int,
        touched: set[str],
        replace_all: bool,
        push_output: bool,
    ) -> bool:
        """:meth:`write_node_state` for checks; their changed services go into ``touched``."""
        changed = False
        want_chks = {c.check_id: c for c in checks}
        for (n, cid), row in list(self.checks.items()):
            if n == node and cid != SERF_CHECK and cid not in want_chks and replace_all:
                del self.checks[(n, cid)]
                touched.add(row.service_name)
                changed = True
        for cid, chk in want_chks.items():
            old_chk = self.checks.get((node, cid))
            if old_chk is not None and old_chk.definition() == chk.definition():
                if push_output and old_chk.output != chk.output:
                    old_chk.output, old_chk.modify_index = chk.output, idx
                    touched.add(chk.service_name)
                    changed = True
                continue
            chk.create_index = old_chk.create_index if old_chk else idx
            chk.modify_index = idx
            self.checks[(node, cid)] = chk
            touched.add(chk.service_name)
            changed = True
        return changed

    def _touch_node_services(self, node: str, idx: int) -> None:
        for (n, _), svc in self.services.items():
            if n == node:
                self.service_index[svc.service] = idx

    # --- catalog reads ------------------------------------------------------------------

    def instances(self, service: str) -> list[CatalogService]:
        return [s for s in self.services.values() if s.service == service]

    def index_of_service(self, service: str) -> int:
        if self.instances(service):
            return self.service_index.get(service, self.index)
        return self.extinction_index

    def checks_of(self, svc: CatalogService) -> list[CatalogCheck]:
        """Node-level checks of the instance's node plus the instance's own checks (§5.3)."""
        return [
            c
            for (n, _), c in self.checks.items()
            if n == svc.node and (c.service_id == "" or c.service_id == svc.id)
        ]

    # --- KV -----------------------------------------------------------------------------

    def kv_put(self, key: str, value: bytes, *, flags: int = 0, cas: int | None = None) -> bool:
        cur = self.kv.get(key)
        if cas is not None:
            if cas == 0 and cur is not None:
                return False
            if cas > 0 and (cur is None or cur.modify_index != cas):
                return False
        idx = self.bump()
        if cur is None:
            self.kv[key] = KVEntry(key, value, flags, idx, idx)
        else:
            cur.value, cur.flags, cur.modify_index = value, flags, idx
        self.kv_tombstones.pop(key, None)
        self.kv_table_index = idx
        self.notify()
        return True

    def kv_delete(self, key: str, *, recurse: bool = False, cas: int | None = None) -> bool:
        if cas is not None and not recurse:
            cur = self.kv.get(key)
            if cas == 0 or cur is None or cur.modify_index != cas:
                return False
        doomed = [k for k in self.kv if (k.startswith(key) if recurse else k == key)]
        if not doomed:
            return True
        idx = self.bump()
        for k in doomed:
            del self.kv[k]
            self.kv_tombstones[k] = idx
        self.kv_table_index = idx
        self.notify()
        return True

    def kv_prefix_index(self, prefix: str) -> int:
        idxs = [e.modify_index for k, e in self.kv.items() if k.startswith(prefix)]
        idxs += [i for k, i in self.kv_tombstones.items() if k.startswith(prefix)]
        return max(idxs) if idxs else self.kv_table_index
