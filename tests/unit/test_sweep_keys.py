"""What ingest records for a swept source (compose._sweep_keys): the poll's id of the change each webhook
carries, so the sweep recognises a delivered webhook whatever id its sender gave it."""

from __future__ import annotations

import json

from switchyard.compose import _sweep_keys
from switchyard.ingest import SplitEvent


def event(event_id: str, event_type: str, data: object) -> SplitEvent:
    body = json.dumps({"type": event_type, "timestamp": "2026-11-20T12:00:00.000Z", "data": data})
    return SplitEvent(event_id=event_id, timestamp="2026-11-20T12:00:00.000Z", body=body, event_type=event_type)


def test_a_source_whose_sender_cannot_use_the_polls_ids_is_recorded_by_the_change_it_carries() -> None:
    events = [event("msg_1", "order.status_changed", {"orderId": "CL-10001", "version": 3}),
              event("msg_2", "customer.updated", {"customerId": "C-501", "version": 2}),
              event("msg_3", "product.updated", {"sku": "A", "version": 2}),  # not swept: its own id
              event("msg_4", "order.created", ["not an object"])]
    assert _sweep_keys("clarity", events) == ["clarity:order:CL-10001:v3", "clarity:customer:C-501:v2", "msg_3",
                                              "msg_4"]


def test_a_source_whose_sender_uses_the_polls_ids_is_recorded_by_them() -> None:
    placed = event("nopcommerce:order:g:placed", "order.placed", {"Order": {"Id": 1}})
    assert _sweep_keys("nopcommerce", [placed]) == ["nopcommerce:order:g:placed"]
