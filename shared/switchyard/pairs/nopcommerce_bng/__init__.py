"""nopCommerce ⇄ BNG: the order-to-cash steps, the target of BNG's events and the mapping document that joins
the two systems (the registry's ``PAIR``)."""

from switchyard.pairs.nopcommerce_bng.dry_run import dry_run
from switchyard.pairs.nopcommerce_bng.mapping import BngOrderMapping, load_bng_mapping
from switchyard.pairs.nopcommerce_bng.order_to_cash import STEPS, BngOrderToCash
from switchyard.pairs.nopcommerce_bng.steps import bng_events, order_to_cash
from switchyard.registry import MappingSpec, Pair, StepSet

PAIR = Pair(systems=frozenset({"bng", "nopcommerce"}), target=bng_events,
            step_sets={"bng": StepSet(steps=STEPS, build=order_to_cash)},
            mapping=MappingSpec(load=load_bng_mapping, dry_run=dry_run))

__all__ = ["PAIR", "STEPS", "BngOrderMapping", "BngOrderToCash", "load_bng_mapping"]
