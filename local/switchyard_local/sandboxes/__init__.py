"""In-memory HTTP sandboxes that speak vendor APIs, for integration tests and the local demo."""

from switchyard_local.sandboxes.faults import FaultInjector, FaultPlan
from switchyard_local.sandboxes.streak import DEMO_PIPELINE, StreakSandbox

__all__ = ["DEMO_PIPELINE", "FaultInjector", "FaultPlan", "StreakSandbox"]
