"""Which order an event is about, read through its source's ``order_ref`` paths (catalog), never by name."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from switchyard.audit import order_refs as refs_in
from switchyard.catalog import Catalog


def event_data(queued: dict[str, Any]) -> dict[str, Any] | None:
    """The ``data`` of a queued event (``switchyard.events.flow_message``), or None if it has none."""
    try:
        envelope = json.loads(queued["body"])
    except (KeyError, TypeError, ValueError):
        return None
    data = envelope.get("data") if isinstance(envelope, dict) else None
    return data if isinstance(data, dict) else None


def order_refs(catalog: Catalog, source: str | None, data: dict[str, Any] | None) -> list[str]:
    """Every order reference the event carries (``CustomOrderNumber``, then ``Id``, ...), in the source's order."""
    config = catalog.sources.get(source or "")
    if config is None or data is None:
        return []
    return refs_in(config.order_ref, data)


def order_reader(catalog: Catalog) -> Callable[[dict[str, Any]], list[str]]:
    """For :func:`switchyard_cli.operations.read_letter`: the order references of a queued event."""

    def read(queued: dict[str, Any]) -> list[str]:
        return order_refs(catalog, queued.get("source"), event_data(queued))

    return read
