"""nopCommerce ⇄ BNG: the order-to-cash steps and the mapping document that joins the two systems."""

from switchyard.pairs.nopcommerce_bng.mapping import BngOrderMapping, load_bng_mapping
from switchyard.pairs.nopcommerce_bng.order_to_cash import STEPS, BngOrderToCash

__all__ = ["STEPS", "BngOrderMapping", "BngOrderToCash", "load_bng_mapping"]
