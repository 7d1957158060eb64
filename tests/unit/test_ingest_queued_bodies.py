"""What ingest queues for each event: compact JSON whatever the delivery format (the digest that tells a
reused webhook id from a repeat is taken over these bytes, and SQS counts them against its 256 KiB)."""

from __future__ import annotations

import json

from switchyard.ingest import split_delivery
from switchyard_local.sandboxes.quickbooks import WebhookEvent, legacy_payload

STOCK_QUEUE = "https://sqs.test/q/quickbooks-stock-to-nopcommerce"


def test_split_quickbooks_change_is_queued_as_compact_json() -> None:
    document = legacy_payload([WebhookEvent("9130", "Item", "7", "Update", "2026-11-20T09:15:00.000Z", "ce-1")])
    routes = {"item.updated": {"quickbooks-stock-to-nopcommerce": STOCK_QUEUE}}

    [event], ignored = split_delivery("quickbooks", "intuit", document, routes=routes)

    assert ignored == 0
    assert event.body == json.dumps(json.loads(event.body), separators=(",", ":"))
