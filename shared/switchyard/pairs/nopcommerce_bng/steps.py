"""The nopCommerce ⇄ BNG order-to-cash steps a flow's state machine can name (``run: bng.<step>``), as step
factories for the step registry the state-machine declarations use (``STEP_FACTORIES``).

A factory takes the step context the steps function builds per version of the connection secrets (its
``flow`` config, ``client(system)`` for the flow's clients, ``once(key, build)`` to share one object between
the steps of a build) and returns the handler ``state -> result``. Typed loosely here so this package does not
depend on the declaration code's module; the lead connects it when the branches meet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from switchyard.pairs.nopcommerce_bng.mapping import load_bng_mapping
from switchyard.pairs.nopcommerce_bng.order_to_cash import STEPS, BngOrderToCash

StepHandler = Callable[[Mapping[str, Any]], dict[str, Any]]


def order_to_cash(context: Any) -> BngOrderToCash:
    """One BngOrderToCash per build, shared by every step: the flow's mapping document, BNG as the target,
    nopCommerce as the shop the shipment and statuses are written back to."""
    return context.once("bng.order_to_cash", lambda: BngOrderToCash(
        load_bng_mapping(context.flow.mapping_document or "nopcommerce-to-bng.yaml"), context.client("bng"),
        context.client("nopcommerce"), flow=context.flow.name))


def _step(name: str) -> Callable[[Any], StepHandler]:
    def factory(context: Any) -> StepHandler:
        steps = order_to_cash(context)

        def run(state: Mapping[str, Any]) -> dict[str, Any]:
            return steps.run(name, state)

        return run

    return factory


STEP_FACTORIES: dict[str, Callable[[Any], StepHandler]] = {f"bng.{name}": _step(name) for name in STEPS}
