"""Delivers a source's events into Salesforce under a ``SalesforceMapping`` (clarity-to-salesforce.yaml).

Calls per event (each composite is one API call against the org's 24-hour allocation):

* customer → one composite (all-or-none): upsert the Account, then the Contact, both by the external id
  field (the customer key), the Contact linked to its Account by that external id. A 300 (several records
  share the key) is MultipleMatchesError: dead-lettered with the matching ids, never a guess. On an update
  event only the fields whose master is the source (or both) are sent.
* order → the price-book entries of its product codes (one query, cached per process for
  ``PRICE_BOOK_TTL_SECONDS``), then one composite (all-or-none): the Account upsert, the Order (or
  Opportunity) upsert by the order key, and one upsert per line by ``<order key>-<position>``, so a
  redelivery writes nothing twice. A product without an active entry is a permanent error naming it.
  Orders with more lines than one composite holds go in further composites of line upserts (each
  all-or-none; the idempotent upserts let a retry finish an order whose later batch failed).
* product → the Product2 upsert and its standard price-book entry (created, or updated when it exists).
* stock → the Product2's stock field, update only: a product Salesforce does not know yet is out of order.

Every event claims its entity with its change time first: an older event never overwrites a newer one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from switchyard.connectors.http import jsonable
from switchyard.entity_state import EntityState
from switchyard.errors import OutOfOrderError, PermanentError
from switchyard.events import FlowEvent
from switchyard.systems.salesforce.client import SalesforceClient
from switchyard.systems.salesforce.mapping import CustomerPlan, OrderPlan, SalesforceMapping
from switchyard.targets import DeliveryResult

PRICE_BOOK_TTL_SECONDS = 900.0
MAX_SUBREQUESTS = 25
CREATE_EVENTS = frozenset({"customer.created", "product.created"})


def _soql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class PriceBook:
    """Active price-book entries by product code, read in one query per order and cached per process."""

    def __init__(self, client: SalesforceClient, price_book: str, *, ttl_seconds: float = PRICE_BOOK_TTL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._price_book = price_book
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._book_id: str | None = None
        self._entries: dict[str, tuple[str, float]] = {}  # product code -> (entry id, when read)

    def book_id(self) -> str:
        if self._book_id is None:
            if self._price_book != "standard":
                self._book_id = self._price_book
            else:
                rows = self._client.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true LIMIT 1")
                if not rows:
                    raise PermanentError("the org has no standard price book", reason="no_price_book")
                self._book_id = str(rows[0]["Id"])
        return self._book_id

    def entries(self, codes: Sequence[str]) -> dict[str, str]:
        """Product code → active PricebookEntry id; PermanentError naming every code without one."""
        now = self._clock()
        with self._lock:
            known = {c: e for c, (e, at) in self._entries.items() if now - at < self._ttl}
        missing = sorted({c for c in codes if c not in known})
        if missing:
            book = self.book_id()
            found: dict[str, str] = {}
            for start in range(0, len(missing), 100):  # keep the query text well under SOQL's limit
                chunk = missing[start:start + 100]
                rows = self._client.query(
                    "SELECT Id, Product2.ProductCode FROM PricebookEntry WHERE IsActive = true AND "
                    f"Pricebook2Id = {_soql_string(book)} AND Product2.ProductCode IN "
                    f"({', '.join(_soql_string(c) for c in chunk)})")
                for row in rows:
                    found[str((row.get("Product2") or {}).get("ProductCode"))] = str(row["Id"])
            with self._lock:
                for code, entry in found.items():
                    self._entries[code] = (entry, now)
            known.update(found)
        absent = sorted({c for c in codes if c not in known})
        if absent:
            raise PermanentError(f"no active price-book entry for product code(s) {', '.join(absent)} in price "
                                 f"book {self.book_id()}: add the product to the price book (or activate its "
                                 "entry), then redrive", reason="no_active_price_book_entry")
        return {c: known[c] for c in codes}


class SalesforceTarget:
    def __init__(self, mapping: SalesforceMapping, client: SalesforceClient, state: EntityState, *,
                 source: str = "clarity", warn: Callable[[str], None] | None = None,
                 price_book: PriceBook | None = None) -> None:
        self.mapping = mapping
        self.client = client
        self.state = state
        self.source = source
        self._warn = warn
        self.price_book = price_book or PriceBook(client, mapping.doc.price_book)
        self._ext = mapping.external_id_field
        self._version = client.data_path

    def deliver(self, event: FlowEvent) -> DeliveryResult:
        action, plan = self.mapping.plan(event.type, event.data)
        entity = f"{action.removeprefix('upsert_').removeprefix('update_')}#{getattr(plan, 'key', None) or plan['key']}"
        if not self.state.claim(f"salesforce#{entity}", event.timestamp, event.event_id):
            return DeliveryResult("stale", {"entity": entity})
        if action == "upsert_customer":
            return self._customer(plan, created=event.type in CREATE_EVENTS)
        if action == "upsert_order":
            return self._order(plan)
        if action == "upsert_product":
            return self._product(plan)
        return self._stock(plan)

    # ------------------------------------------------------------------ customers

    def _upsert(self, sobject: str, key: str, reference: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return {"method": "PATCH", "url": f"{self._version}/sobjects/{sobject}/{self._ext}/{_path(key)}",
                "referenceId": reference, "body": jsonable(dict(body))}

    def _customer_subrequests(self, plan: CustomerPlan, *, created: bool) -> list[dict[str, Any]]:
        side = self.source
        account = plan.account if created else self.mapping.writable("Account", plan.account, side=side)
        contact = plan.contact if created else self.mapping.writable("Contact", plan.contact, side=side)
        for name in plan.fallbacks_used:
            if self._warn is not None:
                self._warn(f"fallback:{name}")
        # a required field that is not ours to write must still be there when the upsert creates the record
        for required, values, shape in (("Name", account, plan.account), ("LastName", contact, plan.contact)):
            values.setdefault(required, shape.get(required))
        contact = {**contact, "Account": {self._ext: plan.key}}
        return [self._upsert("Account", plan.key, "account", account),
                self._upsert("Contact", plan.key, "contact", contact)]

    def _customer(self, plan: CustomerPlan, *, created: bool) -> DeliveryResult:
        answers = self.client.composite(self._customer_subrequests(plan, created=created), all_or_none=True)
        account, contact = (a.body or {} for a in answers)
        outcome = "created" if contact.get("created") else "updated"
        return DeliveryResult(outcome, {"account_id": account.get("id"), "contact_id": contact.get("id"),
                                        "b2b": plan.b2b, "fallbacks": list(plan.fallbacks_used)})

    # ------------------------------------------------------------------ orders

    def _order(self, plan: OrderPlan) -> DeliveryResult:
        entries = self.price_book.entries([line.product_code for line in plan.lines])
        book = self.price_book.book_id()
        record = plan.record
        parent_field = "Order" if record == "Order" else "Opportunity"
        line_object = "OrderItem" if record == "Order" else "OpportunityLineItem"
        head = self._customer_subrequests(plan.customer, created=False)[:1]  # the account the order belongs to
        fields = {**plan.fields, "Account": {self._ext: plan.customer.key}, "Pricebook2Id": book}
        head.append(self._upsert(record, plan.key, "order", fields))
        lines = [self._upsert(line_object, line.key, f"line{n}", {
            **line.fields, parent_field: {self._ext: plan.key}, "PricebookEntryId": entries[line.product_code]})
            for n, line in enumerate(plan.lines, start=1)]
        room = MAX_SUBREQUESTS - len(head)
        batches = [head + lines[:room]] + [lines[i:i + MAX_SUBREQUESTS]
                                           for i in range(room, len(lines), MAX_SUBREQUESTS)]
        answers = []
        for batch in batches:
            answers.extend(self.client.composite(batch, all_or_none=True))
        order = answers[1].body or {}
        if record == "Order" and self.mapping.doc.order is not None and self.mapping.doc.order.activate:
            self.client.update("Order", str(order.get("id")), {"Status": "Activated"})
        return DeliveryResult("created" if order.get("created") else "updated",
                              {"record": record, "id": order.get("id"), "lines": len(plan.lines),
                               "calls": len(batches)})

    # ------------------------------------------------------------------ products and stock

    def _product(self, plan: Mapping[str, Any]) -> DeliveryResult:
        key = plan["key"]
        book = self.price_book.book_id()
        product = self.client.upsert("Product2", self._ext, key, {**plan["fields"], self._ext: key})
        price = {"UnitPrice": plan["price"], "IsActive": bool(plan["active"])}
        rows = self.client.query(f"SELECT Id FROM PricebookEntry WHERE Pricebook2Id = {_soql_string(book)} AND "
                                 f"Product2.{self._ext} = {_soql_string(key)}")
        if rows:
            self.client.update("PricebookEntry", str(rows[0]["Id"]), jsonable(price))
        else:
            product_id = product.id or self._product_id(key)
            self.client.composite([{"method": "POST", "url": f"{self._version}/sobjects/PricebookEntry",
                                    "referenceId": "entry", "body": jsonable(
                                        {**price, "Pricebook2Id": book, "Product2Id": product_id,
                                         "UseStandardPrice": False})}])
        return DeliveryResult("created" if product.created else "updated", {"product_id": product.id,
                                                                             "price": str(plan["price"])})

    def _product_id(self, key: str) -> str:
        rows = self.client.query(f"SELECT Id FROM Product2 WHERE {self._ext} = {_soql_string(key)}")
        return str(rows[0]["Id"])

    def _stock(self, plan: Mapping[str, Any]) -> DeliveryResult:
        value = plan["value"]
        try:
            self.client.upsert("Product2", self._ext, plan["key"], {plan["field"]: value}, update_only=True)
        except PermanentError as exc:
            if exc.target_status == 404:  # product.created has not reached Salesforce yet
                raise OutOfOrderError(f"product {plan['key']} is not in Salesforce yet", reason="product_missing",
                                      target_status=404) from exc
            raise
        return DeliveryResult("updated", {"sku": plan["key"], plan["field"]: str(Decimal(str(value)))})


def _path(key: str) -> str:
    from urllib.parse import quote

    return quote(key, safe="")
