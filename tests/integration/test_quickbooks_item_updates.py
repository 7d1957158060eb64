"""nopcommerce-products-to-quickbooks against the QuickBooks sandbox (which enforces SyncToken like QBO): a
product edited in the shop renames and reprices its Item by a sparse update; a redelivery writes nothing; an
Item edited meanwhile (5010) is re-read and updated on top of that edit; older edits are stale; the opt-in,
missing, ambiguous and clashing Items."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from switchyard.entity_state import InMemoryEntityState
from switchyard.errors import MappingError, PermanentError
from switchyard.events import FlowEvent
from switchyard.systems.quickbooks.client import QuickBooksClient, QuickBooksConnection
from switchyard.systems.quickbooks.item_updates import (
    QuickBooksItemUpdateTarget,
    load_item_update_mapping,
    parse_item_update_mapping,
)
from switchyard.tokens import InMemoryTokenStore
from switchyard_local.sandboxes.quickbooks import TOKEN_PATH, QuickBooksSandbox

from tests.conftest import SAMPLES_DIR, FakeClock

FLOW = "nopcommerce-products-to-quickbooks"
REALM = "9130"
EDITED = datetime(2026, 11, 21, 10, 4, 12, tzinfo=UTC)
T0 = 1_795_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def books(clock: FakeClock) -> QuickBooksSandbox:
    return QuickBooksSandbox(clock=clock, per_second=10_000, per_minute=100_000)


@pytest.fixture
def qbo(books: QuickBooksSandbox, clock: FakeClock) -> Iterator[QuickBooksClient]:
    tokens = books.connect_realm(REALM)
    secret = {"base_url": "http://qbo.test", "token_url": f"http://qbo.test{TOKEN_PATH}", "client_id": "qbo-client",
              "client_secret": "qbo-secret", "realm_id": REALM, "refresh_token": tokens["refresh_token"],
              "access_token": tokens["access_token"], "access_token_expires_at": T0 + 3600}
    store = InMemoryTokenStore({REALM: secret}, clock=clock, sleep=lambda _: time.sleep(0.001), poll_seconds=0.01)
    with QuickBooksClient(QuickBooksConnection.from_secret(secret), store,
                          transport=httpx.WSGITransport(app=books.wsgi_app), clock=clock) as client:
        yield client


@pytest.fixture
def state() -> InMemoryEntityState:
    return InMemoryEntityState()


@pytest.fixture
def target(qbo: QuickBooksClient, state: InMemoryEntityState) -> QuickBooksItemUpdateTarget:
    return QuickBooksItemUpdateTarget(load_item_update_mapping(f"{FLOW}.yaml"), qbo, state)


def edit(*, at: datetime = EDITED, event_id: str = "evt-1", **product: Any) -> FlowEvent:
    data = json.loads((SAMPLES_DIR / "nop_product_updated.json").read_text())["data"]
    data["Product"].update(product)
    return FlowEvent(flow=FLOW, event_id=event_id, source="nopcommerce", type="product.updated", timestamp=at,
                     data=data)


def item_writes(books: QuickBooksSandbox) -> int:
    return sum(1 for method, path, status in books.requests if method == "POST" and path.endswith("/item")
               and status == 200)


def test_product_edit_renames_and_reprices_the_item_keeping_the_rest(target, books):
    item = books.seed_item(REALM, "Standing desk", "DESK-STD-01", qty_on_hand=12, unit_price=450.0)

    result = target.deliver(edit())

    stored = books.get_entity(REALM, "Item", item["Id"])
    assert (result.outcome, result.detail["fields"]) == ("updated", ["Name", "UnitPrice"])
    assert (stored["Name"], stored["UnitPrice"]) == ("Standing desk- oak, 160 cm", 479)  # ':' is a sub-item path
    assert (stored["Sku"], stored["QtyOnHand"], stored["Type"]) == ("DESK-STD-01", 12, item["Type"])
    assert int(stored["SyncToken"]) == int(item["SyncToken"]) + 1


def test_redelivered_or_unchanged_edit_writes_nothing(target, books):
    books.seed_item(REALM, "Standing desk", "DESK-STD-01", qty_on_hand=12, unit_price=450.0)
    target.deliver(edit())
    writes = item_writes(books)

    again = target.deliver(edit())
    stock_only = target.deliver(edit(at=EDITED + timedelta(minutes=3), event_id="evt-2"))  # e.g. stock edited

    assert (again.outcome, stock_only.outcome) == ("unchanged", "unchanged")
    assert item_writes(books) == writes


def test_item_edited_in_quickbooks_meanwhile_is_reread_and_updated_on_top(qbo, state, books):
    # Given an accountant who adjusts the Item's stock between our read and our write (SyncToken moves on)
    item = books.seed_item(REALM, "Standing desk", "DESK-STD-01", qty_on_hand=12, unit_price=450.0)

    class Racing:
        def __init__(self) -> None:
            self.raced = False

        def __getattr__(self, name: str) -> Any:
            return getattr(qbo, name)

        def sparse_update(self, entity: str, entity_id: str, sync_token: str, changes: Mapping[str, Any],
                          request_id: str) -> dict[str, Any]:
            if not self.raced:
                self.raced = True
                books.set_item_quantity(REALM, item["Id"], 9)
            return qbo.sparse_update(entity, entity_id, sync_token, changes, request_id)

    target = QuickBooksItemUpdateTarget(load_item_update_mapping(f"{FLOW}.yaml"), Racing(), state)

    result = target.deliver(edit(Price=499))

    # Then QuickBooks refused the stale SyncToken once (5010); the retry kept the accountant's quantity
    stored = books.get_entity(REALM, "Item", item["Id"])
    refused = [r for r in books.requests if r[1].endswith("/item") and r[2] == 400]
    assert result.outcome == "updated" and len(refused) == 1
    assert (stored["UnitPrice"], stored["QtyOnHand"]) == (499, 9)


def test_older_edit_arriving_after_a_newer_one_is_stale(target, books):
    item = books.seed_item(REALM, "Standing desk", "DESK-STD-01", qty_on_hand=12, unit_price=450.0)
    target.deliver(edit(Price=499, event_id="evt-new"))

    late = target.deliver(edit(Price=479, at=EDITED - timedelta(minutes=1), event_id="evt-old"))

    assert late.outcome == "stale"
    assert books.get_entity(REALM, "Item", item["Id"])["UnitPrice"] == 499


def test_unknown_inactive_or_keyless_product_is_filtered(target, books):
    inactive = books.seed_item(REALM, "Old desk", "DESK-OLD", qty_on_hand=0, unit_price=10.0, active=False)
    assert target.deliver(edit(Sku="NOT-IN-BOOKS")).outcome == "filtered"
    assert target.deliver(edit(Sku="DESK-OLD", event_id="evt-2")).outcome == "filtered"
    assert target.deliver(edit(Sku="  ", event_id="evt-3")).outcome == "filtered"
    assert target.deliver(edit(Deleted=True, event_id="evt-4")).outcome == "filtered"
    assert books.get_entity(REALM, "Item", inactive["Id"])["UnitPrice"] == 10


def test_two_active_items_with_the_sku_dead_letter(target, books):
    books.seed_item(REALM, "Desk A", "DESK-STD-01", qty_on_hand=1, unit_price=1.0)
    books.seed_item(REALM, "Desk B", "desk-std-01", qty_on_hand=1, unit_price=1.0)

    with pytest.raises(PermanentError) as raised:
        target.deliver(edit())
    assert raised.value.reason == "ambiguous_product"


def test_name_another_item_holds_dead_letters_with_both_names(target, books):
    books.seed_item(REALM, "Standing desk", "DESK-STD-01", qty_on_hand=1, unit_price=479.0)
    books.seed_item(REALM, "Desk deluxe", "DESK-DLX", qty_on_hand=1, unit_price=900.0)

    with pytest.raises(PermanentError, match="'Desk deluxe'") as raised:
        target.deliver(edit(Name="Desk deluxe"))
    assert raised.value.reason == "duplicate_name"


def test_opted_out_flow_changes_no_item(qbo, state, books):
    books.seed_item(REALM, "Standing desk", "DESK-STD-01", qty_on_hand=12, unit_price=450.0)
    text = (SAMPLES_DIR.parents[1].parent / "shared/switchyard/config/mappings" / f"{FLOW}.yaml").read_text()
    mapping = parse_item_update_mapping(text.replace("update_items: true", "update_items: false"), name="test")

    result = QuickBooksItemUpdateTarget(mapping, qbo, state).deliver(edit())

    assert result.outcome == "filtered" and item_writes(books) == 0


def test_price_only_mapping_keeps_the_item_name(qbo, state, books):
    item = books.seed_item(REALM, "Desk (books name)", "DESK-STD-01", qty_on_hand=1, unit_price=450.0)
    mapping = parse_item_update_mapping(MAPPING.replace("name: {path: Product.Name}", "name: null"), name="test")

    QuickBooksItemUpdateTarget(mapping, qbo, state).deliver(edit())

    assert books.get_entity(REALM, "Item", item["Id"])["Name"] == "Desk (books name)"


MAPPING = """
flow: nopcommerce-products-to-quickbooks
target: quickbooks
events: {product.updated: update_item}
update_items: true
item:
  name: {path: Product.Name}
  unit_price: {path: Product.Price}
"""


@pytest.mark.parametrize(("change", "message"), [
    (("update_items: true\n", ""), "update_items"),
    (("item:\n", "match_on: Name\nitem:\n"), "item.name must be null"),
    (("  name: {path: Product.Name}\n  unit_price: {path: Product.Price}\n", "  name: null\n  unit_price: null\n"),
     "nothing to update"),
])
def test_item_update_mapping_is_checked_when_it_loads(change, message):
    with pytest.raises(MappingError, match=message):
        parse_item_update_mapping(MAPPING.replace(*change), name="test")
