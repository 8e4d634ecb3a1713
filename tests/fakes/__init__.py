"""Test doubles shared by every part's tests (see :mod:`tests.fakes.upstream`)."""

from tests.fakes.answers import ToolCall
from tests.fakes.upstream import FakeUpstream, Fault, Recorded

__all__ = ["Fault", "FakeUpstream", "Recorded", "ToolCall"]
