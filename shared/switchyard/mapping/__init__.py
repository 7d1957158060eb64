"""Declarative mapping documents (YAML, one per flow), validated and compiled on load."""

from __future__ import annotations

from typing import Any

from switchyard.errors import MappingError


def dry_run(target: str, mapping_file: str, event_type: str, data: Any) -> tuple[str, Any]:
    """What an event becomes under a flow's mapping, calling nobody: (action, plan)."""
    action: str | None
    plans: dict[str, Any]
    if target == "streak":
        from switchyard.mapping.streak_deals import load_deal_mapping

        deals = load_deal_mapping(mapping_file)
        action = deals.events.get(event_type)
        plans = {"upsert_deal": deals.plan_deal, "move_stage": deals.plan_stage_change,
                 "update_contact": deals.plan_contact_update}
    else:
        from switchyard.mapping.clarity_sync import load_clarity_sync_mapping

        sync = load_clarity_sync_mapping(mapping_file)
        action = sync.events.get(event_type)
        plans = {"update_order_status": sync.plan_order_status, "update_customer": sync.plan_customer}
    if action is None:
        raise MappingError(f"{mapping_file} does not handle event type {event_type!r}")
    return action, plans[action](data)
