"""An HTTP fake of the Kubernetes API for the tests and the sandbox."""

from bot.sandbox.fakes.kubernetes.cluster import Behaviour, FakeCluster
from bot.sandbox.fakes.kubernetes.server import SCENARIOS, ApiCall, FakeKubernetes

__all__ = ["SCENARIOS", "ApiCall", "Behaviour", "FakeCluster", "FakeKubernetes"]
