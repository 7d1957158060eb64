"""Declarative mapping documents (YAML, one per flow), validated and compiled on load."""

from __future__ import annotations

from typing import Any

from switchyard.errors import MappingError


def dry_run(target: str, mapping_file: str, event_type: str, data: Any) -> tuple[str, Any]:
    """What an event becomes under a flow's mapping, calling nobody: (action, plan)."""
    action: str | None
    plans: dict[str, Any]
    if target == "quickbooks":
        return _quickbooks_dry_run(mapping_file, event_type, data)
    if target == "salesforce":
        from dataclasses import asdict, is_dataclass

        from switchyard.connectors.http import jsonable
        from switchyard.systems.salesforce.mapping import load_salesforce_mapping

        action, plan = load_salesforce_mapping(mapping_file).plan(event_type, data)
        return action, jsonable(asdict(plan) if is_dataclass(plan) and not isinstance(plan, type) else plan)
    if target == "clarity" and mapping_file.startswith("salesforce-"):
        from switchyard.pairs.clarity_salesforce import load_change_mapping

        return load_change_mapping(mapping_file).dry_run(event_type, data)
    if target == "streak":
        from switchyard.systems.streak.deal_mapping import load_deal_mapping

        deals = load_deal_mapping(mapping_file)
        action = deals.events.get(event_type)
        plans = {"upsert_deal": deals.plan_deal, "move_stage": deals.plan_stage_change,
                 "update_contact": deals.plan_contact_update}
    else:
        from switchyard.systems.clarity.sync_mapping import load_clarity_sync_mapping

        sync = load_clarity_sync_mapping(mapping_file)
        action = sync.events.get(event_type)
        plans = {"update_order_status": sync.plan_order_status, "update_customer": sync.plan_customer}
    if action is None:
        raise MappingError(f"{mapping_file} does not handle event type {event_type!r}")
    return action, plans[action](data)


def _quickbooks_dry_run(mapping_file: str, event_type: str, data: Any) -> tuple[str, Any]:
    """Order-to-cash: the customer and the document an order becomes (QuickBooks ids shown as placeholders,
    since finding them needs QuickBooks), or what a later event will do to the order's document."""
    from switchyard.connectors.http import jsonable
    from switchyard.systems.quickbooks import order_mapping as orders

    mapping = orders.load_order_mapping(mapping_file)
    order = orders.parse_order(data["Order"])
    number = orders.doc_number(mapping, order.CustomOrderNumber)
    if event_type == "order.placed":
        refs = {sku: f"<Item {sku}>" for sku in orders.item_skus(mapping, data)}
        document = orders.sales_document(mapping, data, customer_id="<Customer>", item_refs=refs)
        return "order_to_cash", jsonable({"customer": orders.customer_fields(mapping, data),
                                          "document": {"entity": document.entity, "body": document.body}})
    if event_type == "order.paid":
        currency, rate = orders.order_currency(mapping, order)
        received = orders.money(order.OrderTotal * rate if rate is not None else order.OrderTotal)
        return "record_payment", {"invoice": number, "linked_txn": "Invoice", "amount": f"{received} {currency}",
                                  "applied": "up to the invoice's open balance"}
    if event_type == "order.status_changed":
        if orders.is_cancelled(order):
            return "cancel", {"document": number, "unpaid_invoice": "void", "paid": "flag for review, change nothing"}
        return "none", {"reason": "only a cancellation changes the QuickBooks document"}
    raise MappingError(f"{mapping_file} does not handle event type {event_type!r}")
