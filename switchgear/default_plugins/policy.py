"""Built-in action policy: answers ``on_anomaly`` with :class:`switchgear.detector.policy.Policy`.

``gateway`` must implement :class:`switchgear.detector.control.GatewayControl`. The policy
state (who is ejected, which models fell back) lives on the gateway object when it has a
``policy`` attribute, else in a weak map keyed by the gateway, so it dies with it.
"""

from __future__ import annotations

import weakref
from typing import Any

from switchgear.detector.policy import Policy
from switchgear.plugins.hookspecs import hookimpl
from switchgear.types import Action, AnomalyEvent

_policies: weakref.WeakKeyDictionary[Any, Policy] = weakref.WeakKeyDictionary()


def policy_for(gateway: Any) -> Policy:
    own = getattr(gateway, "policy", None)
    if isinstance(own, Policy):
        return own
    policy = _policies.get(gateway)
    if policy is None:
        settings = getattr(gateway, "policy_settings", None)
        policy = _policies[gateway] = Policy(settings)
    return policy


@hookimpl(trylast=True)
async def on_anomaly(event: AnomalyEvent, gateway: Any) -> list[Action] | None:
    return await policy_for(gateway).handle(event, gateway) or None
