"""A test double of Consul's HTTP API, following /work/shared/docs/consul-contract.md.

Lives under ``tests/`` only: nothing in the ``switchgear`` package may import it.
"""

from tests.consul_double.acl import ACLConfig, Token
from tests.consul_double.agent import Agent
from tests.consul_double.blocking import Clock
from tests.consul_double.server import ConsulCluster, ListeningAgent
from tests.consul_double.state import Datacenter

__all__ = ["ACLConfig", "Agent", "Clock", "ConsulCluster", "Datacenter", "ListeningAgent", "Token"]
