"""What ``switchyard status`` adds to the queues: each flow's circuit breaker and its source's last poll.

Both are read from the stack's table with single GetItems (the breaker's and the poll cursor's items), the
same stores the functions write (``switchyard.circuit_breaker``, ``switchyard.polling``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from switchyard.catalog import Catalog
from switchyard.circuit_breaker import BreakerStatus, DynamoBreakerStore
from switchyard.polling import DynamoPollStore
from switchyard.table_keys import PollKeys


def breaker(dynamodb: Any, table: str, connection: str, *, now: float) -> dict[str, Any]:
    """The breaker of the connection a flow's worker calls: closed, open (until when) or half open (probing)."""
    state = DynamoBreakerStore(dynamodb, table).get(connection)
    shown: dict[str, Any] = {"connection": connection, "status": state.status.value,
                             "consecutive_failures": state.consecutive_failures}
    if state.status is not BreakerStatus.CLOSED and state.opened_at is not None:
        shown["open_since"] = datetime.fromtimestamp(state.opened_at, UTC).isoformat()
    if state.status is BreakerStatus.OPEN:
        shown["next_probe_in_seconds"] = max(0, round(state.open_until - now))
    return shown


def last_poll(dynamodb: Any, table: str, catalog: Catalog, source: str, *, now: datetime) -> dict[str, Any] | None:
    """The poll of the flow's source, if it is polled: up to when every order has been seen (the watermark,
    the end of the last finished scan), how long ago that is, and the scan in progress."""
    config = catalog.sources.get(source)
    if config is None or config.poll is None:
        return None
    cursor = DynamoPollStore(dynamodb, table, keys=PollKeys(connection=config.poll.connection, source=source)).cursor()
    shown: dict[str, Any] = {"source": source, "watermark": cursor.watermark.isoformat() if cursor.watermark else None,
                             "lag_seconds": round((now - cursor.watermark).total_seconds())
                             if cursor.watermark else None}
    if cursor.scan_to is not None:
        shown["scanning"] = {"from": cursor.scan_from.isoformat() if cursor.scan_from else None,
                             "to": cursor.scan_to.isoformat(), "page": cursor.page_index}
    return shown
