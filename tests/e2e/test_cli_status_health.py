"""``switchyard status`` against the local stack: each flow's circuit breaker and its source's last poll, read
from the stack's table where the workers and pollers keep them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from switchyard.catalog import load_catalog
from switchyard.circuit_breaker import BreakerState, CircuitBreaker, DynamoBreakerStore
from switchyard.errors import RetryableError
from switchyard.polling import DynamoPollStore, ScanCursor
from switchyard.table_keys import PollKeys
from switchyard_local.stack import LocalStack

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]
FLOW = "nopcommerce-to-streak"


def _table(stack: LocalStack) -> str:
    from switchyard_cli.stackinfo import idempotency_table

    return idempotency_table(stack.client("cloudformation"), "Switchyard-dev")


def test_status_shows_an_open_breaker_until_it_closes(stack, cli) -> None:
    store = DynamoBreakerStore(stack.client("dynamodb"), _table(stack))
    breaker = CircuitBreaker(store, "streak")
    before = store.get("streak")
    try:
        # Given the Streak connection failed five times in a row (what the worker reports): its breaker opens
        for _ in range(5):
            breaker.failed(RetryableError("503 from the target", reason="target_unavailable"))

        shown, _ = cli("status", FLOW, "--json")
        (row,) = shown["flows"]
        assert row["breaker"]["connection"] == "streak" and row["breaker"]["status"] == "open"
        assert row["breaker"]["consecutive_failures"] == 5 and 0 < row["breaker"]["next_probe_in_seconds"] <= 30
        assert "open_since" in row["breaker"]
        assert "open (streak, probe in" in cli("status", FLOW)[0]
    finally:  # the shared stack's next module finds Streak's breaker as it was
        current = store.get("streak")
        assert store.put(BreakerState("streak", version=current.version + 1), expected_version=current.version)
    (row,) = cli("status", FLOW, "--json")[0]["flows"]
    assert row["breaker"]["status"] == before.status.value == "closed"


def test_status_shows_the_polled_sources_last_finished_scan(stack, cli) -> None:
    store = DynamoPollStore(stack.client("dynamodb"), _table(stack),
                            keys=PollKeys(connection="nopcommerce", source="nopcommerce"))
    before = store.cursor()
    watermark = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=7)
    try:
        # Given the poller finished a scan up to seven minutes ago and is reading page 2 of the next
        store.save(ScanCursor(watermark=watermark, scan_from=watermark, scan_to=watermark + timedelta(minutes=6),
                              page_index=2), {}, {})

        shown, _ = cli("status", "--json")
        polls = {row["flow"]: row["last_poll"] for row in shown["flows"]}
        catalog = load_catalog()
        shop_flows = {name for name, flow in catalog.flows.items() if flow.source == "nopcommerce"}
        polled = catalog.polled_sources()
        assert {flow for flow in shop_flows if polls[flow] is not None} == shop_flows
        assert all(polls[name] is None for name, flow in catalog.flows.items() if flow.source not in polled)
        poll = polls[FLOW]
        assert poll["watermark"] == watermark.isoformat() and 7 * 60 <= poll["lag_seconds"] < 9 * 60
        assert poll["scanning"]["page"] == 2
        assert polls["streak-to-clarity"] is None  # Streak only pushes
        assert "7m" in cli("status", FLOW)[0]
    finally:
        store.save(before, {}, {})
