"""Declarative mapping documents (YAML, one per flow), validated and compiled on load."""

from __future__ import annotations

from typing import Any

from switchyard import registry
from switchyard.errors import MappingError


def dry_run(target: str, mapping_file: str, event_type: str, data: Any, *,
            source: str | None = None) -> tuple[str, Any]:
    """What an event becomes under a flow's mapping, calling nobody: (action, plan). The target's system
    reads its own mapping documents (``registry.MappingSpec``), else the pair of the flow's source and target
    (the pair's first where it registers documents for flows into that target)."""
    joined = registry.find_pair(source, target) if source is not None else None
    if joined is not None and joined.mapping is not None and joined.mapping_target == target:
        return joined.mapping.dry_run(mapping_file, event_type, data)
    spec = registry.system(target).mapping
    if spec is None and source is not None:
        joined = registry.find_pair(source, target)
        spec = joined.mapping if joined is not None else None
    if spec is None:
        raise MappingError(f"system {target!r} has no mapping documents")
    return spec.dry_run(mapping_file, event_type, data)
