"""The QuickBooks order-to-cash steps a flow's state machine can name (``run: quickbooks.<step>``), as step
factories: ``STEP_FACTORIES`` is what the step registry folds in (the system registry, once it lands)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from switchyard.state_machines import StepContext, StepFactory, StepHandler
from switchyard.systems.quickbooks.order_mapping import load_order_mapping
from switchyard.systems.quickbooks.order_to_cash import STEPS, OrderToCash


def order_to_cash(context: StepContext) -> OrderToCash:
    """One OrderToCash per build (per version of the connection secrets), shared by every step: the mapping
    document is the flow's; nopCommerce is the shop the write-back reaches."""
    return context.once("quickbooks.order_to_cash", lambda: OrderToCash(
        load_order_mapping(context.flow.mapping_document), context.client("quickbooks"),
        context.client("nopcommerce"), flow=context.flow.name, state=context.entity_state))


def _step(name: str) -> StepFactory:
    def factory(context: StepContext) -> StepHandler:
        steps = order_to_cash(context)

        def run(state: Mapping[str, Any]) -> dict[str, Any]:
            return steps.run(name, state)

        return run

    return factory


STEP_FACTORIES: dict[str, StepFactory] = {f"quickbooks.{name}": _step(name) for name in STEPS}
