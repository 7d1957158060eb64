"""Targets: carry out a mapping's plan in one target system, idempotently."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from switchyard.events import FlowEvent


@dataclass(frozen=True)
class DeliveryResult:
    outcome: str  # created | updated | moved | unchanged | filtered | stale
    detail: dict[str, Any] = field(default_factory=dict)


class Target(Protocol):
    def deliver(self, event: FlowEvent) -> DeliveryResult: ...
