"""Which gateway may scale: with several gateways only the detector leader does.

The fleet-state leader election lives elsewhere; until the gateway has it, every gateway is
the leader. :func:`leader_check` is the one seam: it returns the check the scale plugins
call before each decision, so wiring the real election is a change to this function only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

LeaderCheck = Callable[[], bool]


def always_leader() -> bool:
    return True


def leader_check(app: Any = None) -> LeaderCheck:
    """The leader check for the gateway ``app``.

    Seam for the fleet-state leader: until the gateway holds an election, a gateway is
    always the leader. Replace this body with the election's ``is_leader`` when it lands.
    """
    return always_leader
