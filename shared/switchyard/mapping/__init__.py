"""Declarative mapping documents (YAML, one per flow), validated and compiled on load."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from switchyard import registry
from switchyard.errors import MappingError, SwitchyardError

if TYPE_CHECKING:
    from switchyard.catalog import Catalog


def _spec(target: str, source: str | None) -> registry.MappingSpec:
    """Who reads a flow's mapping documents: the target's system (``registry.MappingSpec``), else the pair of the
    flow's source and target (the pair's first where it registers documents for flows into that target)."""
    joined = registry.find_pair(source, target) if source is not None else None
    if joined is not None and joined.mapping is not None and joined.mapping_target == target:
        return joined.mapping
    spec = registry.system(target).mapping
    if spec is None and joined is not None:
        spec = joined.mapping
    if spec is None:
        raise MappingError(f"system {target!r} has no mapping documents")
    return spec


def dry_run(target: str, mapping_file: str, event_type: str, data: Any, *,
            source: str | None = None) -> tuple[str, Any]:
    """What an event becomes under a flow's mapping, calling nobody: (action, plan)."""
    return _spec(target, source).dry_run(mapping_file, event_type, data)


def mapping_problems(catalog: Catalog) -> list[str]:
    """Every flow's mapping document loaded as its worker will load it, calling nobody: one line per document
    that fails (empty: all load). The deployment runs it at synth, so a broken document never deploys."""
    problems = []
    for name, flow in catalog.flows.items():
        if flow.mapping is None:
            continue
        try:
            _spec(flow.target, flow.source).load(flow.mapping_document)
        except SwitchyardError as exc:
            problems.append(f"flow {name}: {exc}")
    return problems
