"""Declarative mapping documents (YAML, one per flow), validated and compiled on load."""

from __future__ import annotations

from typing import Any

from switchyard.errors import MappingError


def dry_run(target: str, mapping_file: str, event_type: str, data: Any) -> tuple[str, Any]:
    """What an event becomes under a flow's mapping, calling nobody: (action, plan)."""
    action: str | None
    plans: dict[str, Any]
    if target == "quickbooks":
        from switchyard.systems.quickbooks.dry_run import dry_run as quickbooks_dry_run

        return quickbooks_dry_run(mapping_file, event_type, data)
    if target == "nopcommerce":
        from switchyard.systems.nopcommerce.stock_mapping import dry_run as stock_dry_run

        return stock_dry_run(mapping_file, event_type, data)
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
