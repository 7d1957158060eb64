"""Targets: carry out a mapping's plan in one target system, idempotently."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from switchyard.events import FlowEvent

# accepted, then deliberately not applied (the reason is the outcome): logged, counted and listed as drops
DROPPED_OUTCOMES = frozenset({"stale", "not_master", "superseded"})


@dataclass(frozen=True)
class DeliveryResult:
    outcome: str  # created | updated | moved | unchanged | filtered | echo | stale | not_master | superseded
    detail: dict[str, Any] = field(default_factory=dict)


class Target(Protocol):
    def deliver(self, event: FlowEvent) -> DeliveryResult: ...
