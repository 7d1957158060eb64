"""End to end on the local stack: a product edited in nopCommerce (the shop's webhook sender posts
``product.updated``) renames and reprices its QuickBooks Item (nopcommerce-products-to-quickbooks); the
Item notification QuickBooks sends for that update reaches quickbooks-to-nopcommerce and changes no stock.

The stack is shared with other modules: this one keeps to its own SKUs and event ids.
"""

from __future__ import annotations

import itertools
import json

import httpx
import pytest
from switchyard_local.stack import LocalStack
from switchyard_local.webhooks import post_webhook, sample, signed_headers

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]
FLOW = "nopcommerce-products-to-quickbooks"
_numbers = itertools.count(8101)


@pytest.fixture
def settled(stack):
    stack.subscribe_to_vendor_webhooks()  # QuickBooks' Item notifications come back to this stack
    yield stack
    assert stack.drain(timeout=60), "did not settle"


def send_product_edit(stack: LocalStack, product: dict, *, timestamp: str, event_id: str) -> None:
    event = json.loads(sample("nop_product_updated"))
    event["timestamp"] = timestamp
    event["data"]["Product"].update(product, UpdatedOnUtc=timestamp)
    body = json.dumps(event).encode()
    with httpx.Client(transport=httpx.WSGITransport(app=stack.front_door), base_url="http://local") as http:
        status, _ = post_webhook(http, "nopcommerce", body,
                                 signed_headers(stack.signing_secret, body, event_id=event_id))
    assert status == 202
    assert stack.drain(timeout=60)


def test_product_edit_in_the_shop_updates_the_quickbooks_item_once(settled):
    number = next(_numbers)
    sku = f"LAMP-{number}"
    realm = settled.qbo_realm
    item = settled.quickbooks.seed_item(realm, f"Desk lamp {number}", sku, qty_on_hand=6, unit_price=39.0)
    product = settled.nopcommerce.seed_product(f"Desk lamp {number}", sku, stock=6, price=39.0)
    before, stock_before = len(settled.outcomes(FLOW)), len(settled.outcomes("quickbooks-to-nopcommerce"))

    # When the shop's admin renames and reprices the product (and the sender posts it twice)
    edit = {"Id": product["id"], "Name": f"Desk lamp {number}: brass", "Sku": sku, "Price": 44.5}
    send_product_edit(settled, edit, timestamp="2026-11-21T10:04:12Z", event_id=f"msg_product_{number}")
    send_product_edit(settled, edit, timestamp="2026-11-21T10:04:12Z", event_id=f"msg_product_{number}")

    # Then the Item has the new name and price, written once; its stock and the product's are as they were
    stored = settled.quickbooks.get_entity(realm, "Item", item["Id"])
    assert (stored["Name"], stored["UnitPrice"], stored["QtyOnHand"]) == (f"Desk lamp {number}- brass", 44.5, 6)
    assert [o["outcome"] for o in settled.outcomes(FLOW)[before:]] == ["updated", "duplicate"]
    assert int(stored["SyncToken"]) == int(item["SyncToken"]) + 1
    # QuickBooks notified the update: the stock flow read the Item and found nothing to change
    assert [o["outcome"] for o in settled.outcomes("quickbooks-to-nopcommerce")[stock_before:]] == ["unchanged"]
    assert settled.nopcommerce.product(product["id"])["stock_quantity"] == 6
    assert [d for d in settled.dead_letters(FLOW) if sku in json.dumps(d)] == []
