"""nopCommerce order-to-cash in QuickBooks Online: the steps a Step Functions execution runs, one at a time.

    order.placed          customer ─> items ─> document (SalesReceipt | Invoice) ─> write_back
    order.paid            payment (a Payment linked to the Invoice) ─> write_back
    order.status_changed  cancel (void the unpaid Invoice, else flag for review) ─> write_back
                          (to Cancelled)
    order.refunded        refund (RefundReceipt | CreditMemo applied to the Invoice) ─> write_back

``OrderToCash.run(step, state)`` runs one step: ``state`` is the execution's state, ``{"message": <the flow's
queue message>, <earlier step>: <its result>, ...}``; the result is plain JSON the state machine stores under
the step's name. Errors are Switchyard's (QuickBooksClient's RetryableError, OutOfOrderError, PermanentError,
or raised here); the state machine glue (``switchyard.state_machines``) retries or dead-letters them.

Every step can run again (a retry, a DLQ redrive) without doing anything twice:

* the customer is found before it is created (the entity-state link, then its e-mail, then its name), and a
  create sends a ``requestid`` that QBO answers from memory when it sees it again;
* a document is looked up by DocNumber and confirmed by the OrderGuid in its PrivateNote before one is
  created; the payment and the void look at the invoice's Balance and state first;
* a nopCommerce note carries a marker of what it reports (flow, OrderGuid, document/payment/cancel) and is
  only added when no note with that marker exists (``add_order_note`` returns False); a create that timed out
  is looked for again before the step fails, and copies left by racing attempts are deleted;
* an order that cannot be booked (PermanentError with a ``write_back.failure_notes`` reason) gets a note why,
  marked by the reason, before the error reaches the state machine's Catch: once per reason.

SKU -> Item id answers are cached per process (``ItemCache``, 5 minutes): orders of known products cost no
query. With ``items.unknown: create`` an unknown product's Item is created (once: see ``_create_item``). An
item deleted meanwhile answers 610 on the document: the cache is dropped and the step retried.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from decimal import Decimal
from typing import Any, Protocol

from switchyard.entity_state import EntityState
from switchyard.errors import DeliveryError, DuplicateNameError, OutOfOrderError, PermanentError, RetryableError
from switchyard.events import FlowEvent
from switchyard.state_machines import STEP_DROPPED
from switchyard.systems.nopcommerce.source import NopOrder
from switchyard.systems.quickbooks.client import QuickBooksClient, quote_value
from switchyard.systems.quickbooks.order_mapping import (
    INVOICE,
    ORDER_CANCELLED,
    SALES_RECEIPT,
    QuickBooksOrderMapping,
    currency_matches,
    customer_changes,
    customer_email,
    customer_fields,
    customer_key,
    display_name,
    document_entity,
    document_number,
    exchange_rate,
    is_cancelled,
    item_skus,
    money,
    new_item_name,
    new_items,
    order_currency,
    owns,
    parse_order,
    payment_details,
    placed_data,
    refunded_total,
    sales_document,
    txn_date,
)

LOG = logging.getLogger(__name__)
STEPS = ("customer", "items", "document", "payment", "cancel", "refund", "write_back")
REFUND_RECEIPT = "RefundReceipt"
CREDIT_MEMO = "CreditMemo"
CUSTOMER_LINKS = "quickbooks-customer"  # entity-state namespace: nopCommerce customer id -> QBO Customer Id
STALE_RETRIES = 3  # re-reads after a 5010 (stale SyncToken) before the step gives up (and is retried)
SKUS_PER_QUERY = 100  # keeps the query URL short; an order of up to 100 products costs one query


class OrderWriteBack(Protocol):
    """nopCommerce's side (implemented by ``switchyard.systems.nopcommerce.client.NopCommerceClient``)."""

    def get_order(self, order_id: int) -> dict[str, Any]: ...  # snake_case DTO: "order_status_id", ...

    def add_order_note(self, order_id: int, note: str, *, display_to_customer: bool = False,
                       marker: str | None = None) -> bool: ...

    def set_order_status(self, order_id: int, status_id: int, *,
                         only_from: Collection[int] | None = None) -> bool: ...


class ItemCache:
    """(realm, match field, SKU) -> QuickBooks Item id with an expiry; only found items are kept (an
    accountant may add a missing one any minute)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, realm: str, match_field: str, sku: str, now: float) -> str | None:
        with self._lock:
            entry = self._entries.get((realm, match_field, sku.casefold()))
            if entry is None:
                return None
            if entry[1] <= now:
                del self._entries[(realm, match_field, sku.casefold())]
                return None
            return entry[0]

    def put(self, realm: str, match_field: str, sku: str, item_id: str, expires_at: float) -> None:
        with self._lock:
            self._entries[(realm, match_field, sku.casefold())] = (item_id, expires_at)

    def drop(self, realm: str, match_field: str, skus: Collection[str]) -> None:
        with self._lock:
            for sku in skus:
                self._entries.pop((realm, match_field, sku.casefold()), None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


ITEM_CACHE = ItemCache()  # one per process: a warm Lambda container keeps it across orders


def _jsonable(value: Any) -> Any:
    """Step results are stored by Step Functions as JSON: no Decimal."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _amount(value: Any) -> Decimal:
    return money(Decimal(str(value if value is not None else 0)))


def _is_voided(document: Mapping[str, Any]) -> bool:
    # QBO keeps a voided transaction with zero amounts and "Voided" put in front of its PrivateNote
    return _amount(document.get("TotalAmt")) == 0 and str(document.get("PrivateNote") or "").startswith("Voided")


def _payment_ids(invoice: Mapping[str, Any]) -> list[str]:
    return [str(link.get("TxnId")) for link in invoice.get("LinkedTxn") or []
            if isinstance(link, Mapping) and link.get("TxnType") == "Payment"]


def _fault_element(exc: PermanentError) -> str:
    body = exc.target_response
    try:
        return str(body["Fault"]["Error"][0].get("element") or "")
    except (KeyError, IndexError, TypeError, AttributeError):
        return ""


def note_marker(flow: str, order_guid: str, reported: str) -> str:
    """The marker of the one nopCommerce note a flow writes about an order's document, payment or cancel:
    the same for every attempt, run and redrive of that write-back."""
    return hashlib.sha256(f"{flow}:{order_guid.lower()}:{reported}".encode()).hexdigest()[:12]


class OrderToCash:
    """The steps, against one QuickBooks company (``qbo``) and the nopCommerce shop (``shop``).

    ``state`` (optional) remembers which QuickBooks customer a nopCommerce customer became, so repeat
    customers cost one read; ``item_cache`` defaults to the process-wide ``ITEM_CACHE``."""

    def __init__(self, mapping: QuickBooksOrderMapping, qbo: QuickBooksClient, shop: OrderWriteBack, *, flow: str,
                 state: EntityState | None = None, clock: Callable[[], float] = time.time,
                 item_cache: ItemCache | None = None) -> None:
        self.mapping = mapping
        self.qbo = qbo
        self.shop = shop
        self.flow = flow
        self.state = state
        self.clock = clock
        self.items_cache = item_cache if item_cache is not None else ITEM_CACHE
        self._steps: dict[str, Callable[[FlowEvent, Mapping[str, Any]], dict[str, Any]]] = {
            "customer": self.customer, "items": self.items, "document": self.document,
            "payment": self.payment, "cancel": self.cancel, "refund": self.refund, "write_back": self.write_back,
        }

    def run(self, step: str, state: Mapping[str, Any]) -> dict[str, Any]:
        """Run ``step`` for the execution ``state``; ValueError for a step that does not exist."""
        handler = self._steps.get(step)
        if handler is None:
            raise ValueError(f"unknown order-to-cash step {step!r}; the steps are {', '.join(STEPS)}")
        message = state.get("message")
        if not isinstance(message, str):
            raise PermanentError("the execution state has no queue message", reason="malformed_message")
        event = FlowEvent.from_message(message)
        try:
            result = handler(event, state)
        except PermanentError as exc:
            self._tell_shop(event, exc)  # before the state machine's Catch dead-letters the execution
            raise
        return dict(_jsonable(result))

    # ----------------------------------------------------------------- the shop hears about failures

    def _tell_shop(self, event: FlowEvent, failure: PermanentError) -> None:
        """An order that cannot be booked gets a note saying why and what to do (``write_back.failure_notes``),
        once per reason: the marker is the reason's, so a redelivery or redrive that fails again adds
        nothing. A shop that cannot be reached does not hide the failure: logged, and the error is raised."""
        template = self.mapping.failure_notes.get(failure.reason)
        if template is None:
            return
        try:
            order = parse_order(event.data)
        except PermanentError:
            return  # no order to write to
        note = template.format(order_number=order.CustomOrderNumber, detail=failure.message)
        try:
            self.shop.add_order_note(order.Id, note, display_to_customer=False,
                                     marker=note_marker(self.flow, str(order.OrderGuid), f"failed:{failure.reason}"))
        except DeliveryError as exc:
            LOG.warning("could not note on nopCommerce order %s why it was not booked (%s): %s",
                        order.CustomOrderNumber, failure.reason, exc)

    # ----------------------------------------------------------------- customer

    def customer(self, event: FlowEvent, state: Mapping[str, Any]) -> dict[str, Any]:
        """Find or create the order's QuickBooks customer; bring its fields up to date."""
        data = placed_data(event.data)
        guid = str(data.Order.OrderGuid)
        desired = customer_fields(self.mapping, event.data)
        currency, _ = order_currency(self.mapping, data.Order)
        key = customer_key(self.mapping, data)
        found, how = self._find_customer(event.data, desired, currency, key)
        if found is None:
            found, action = self._create_customer(event.data, desired, currency, guid, name_taken=how == "name_taken")
        else:
            action = how
        if action != "created":
            found, changed = self._update_customer(found, desired, guid)
            if action in ("found", "remembered"):
                action = "updated" if changed else "unchanged"
        if self.state is not None and how != "remembered":
            self.state.link(CUSTOMER_LINKS, key, str(found["Id"]))
        return {"id": str(found["Id"]), "display_name": found.get("DisplayName"), "action": action}

    def _linkable(self, customer: Mapping[str, Any], email: str, currency: str) -> bool:
        """A customer an order may be booked on: active, in the order's currency, same e-mail or none."""
        held = ((customer.get("PrimaryEmailAddr") or {}).get("Address") or "").strip().casefold()
        return (customer.get("Active") is not False and currency_matches(self.mapping, customer, currency)
                and held in ("", email.casefold()))

    def _find_customer(self, data: Mapping[str, Any], desired: Mapping[str, Any], currency: str,
                       key: str) -> tuple[dict[str, Any] | None, str]:
        """(the customer, "remembered" (the entity-state link) | "found" (its e-mail) | "linked" (its name)),
        or (None, "absent" | "name_taken")."""
        # a linked customer that was merged away or made inactive is looked up again like a new one
        linked_id = self.state.linked(CUSTOMER_LINKS, key) if self.state is not None else None
        if linked_id is not None:
            try:
                linked = self.qbo.read("Customer", linked_id)
            except PermanentError as exc:
                if exc.reason != "object_not_found":
                    raise
            else:
                if linked.get("Active") is not False and currency_matches(self.mapping, linked, currency):
                    return linked, "remembered"
        email = customer_email(self.mapping, data)
        try:
            rows = self.qbo.query(f"select * from Customer where PrimaryEmailAddr = {quote_value(email)}")
        except PermanentError as exc:
            if exc.reason != "target_rejected":  # a company where the e-mail is not filterable: by name
                raise
            rows = []
        for row in rows:  # the oldest first: QBO answers in Id order
            if currency_matches(self.mapping, row, currency):
                return row, "found"
        named = self._customer_named(desired["DisplayName"])
        if named is None:
            return None, "absent"
        if self._linkable(named, email, currency):
            return named, "linked"
        return None, "name_taken"

    def _customer_named(self, name: str) -> dict[str, Any] | None:
        return self.qbo.query_one("Customer", DisplayName=name)

    def _create_customer(self, data: Mapping[str, Any], desired: dict[str, Any], currency: str, guid: str, *,
                         name_taken: bool) -> tuple[dict[str, Any], str]:
        email = customer_email(self.mapping, data)
        request_id = f"{self.flow}:{guid}:customer"
        if not name_taken:
            try:
                return self.qbo.create("Customer", desired, request_id), "created"
            except DuplicateNameError:  # a vendor, an employee, an inactive customer, or a race
                holder = self._customer_named(desired["DisplayName"])
                if holder is not None and self._linkable(holder, email, currency):
                    return holder, "linked"
        # the name is someone else's: the documented strategy gives the customer a name of its own
        suffixed = {**desired, "DisplayName": display_name(self.mapping, data, disambiguate=True)}
        try:
            # another requestid: QBO would answer the first one's 6240 again
            return self.qbo.create("Customer", suffixed, f"{request_id}:suffixed"), "created"
        except DuplicateNameError as exc:
            holder = self._customer_named(suffixed["DisplayName"])
            if holder is not None and self._linkable(holder, email, currency):
                return holder, "linked"
            raise PermanentError(
                f"QuickBooks names {desired['DisplayName']!r} and {suffixed['DisplayName']!r} are both taken by "
                f"other customers, vendors or employees: rename one in QuickBooks (nopCommerce customer "
                f"{placed_data(data).Customer.Id})", reason="duplicate_name", target_status=exc.target_status,
                target_response=exc.target_response) from exc

    def _update_customer(self, customer: dict[str, Any], desired: Mapping[str, Any],
                         guid: str) -> tuple[dict[str, Any], bool]:
        """Sparse-update the fields that differ; after a 5010 re-read and re-apply (STALE_RETRIES times)."""
        current = customer
        for attempt in range(STALE_RETRIES + 1):
            changes = customer_changes(desired, current)
            if not changes:
                return current, False
            try:
                updated = self.qbo.sparse_update("Customer", str(current["Id"]), str(current["SyncToken"]), changes,
                                                 f"{self.flow}:{guid}:customer-update")
                return updated, True
            except RetryableError as exc:
                if exc.reason != "stale_sync_token" or attempt == STALE_RETRIES:
                    raise
                current = self.qbo.read("Customer", str(current["Id"]))
        raise AssertionError("unreachable")

    # ----------------------------------------------------------------- items

    def items(self, event: FlowEvent, state: Mapping[str, Any]) -> dict[str, Any]:
        """The Item id of every SKU the document needs (products, shipping): {"refs": {sku: id}}."""
        created: list[str] = []
        refs = self._item_refs(item_skus(self.mapping, event.data), event.data, created)
        return {"refs": refs, "created": created} if created else {"refs": refs}

    def _item_refs(self, skus: list[str], order_data: Mapping[str, Any] | None = None,
                   created: list[str] | None = None) -> dict[str, str]:
        """SKU -> Item id; unknown products are created from ``order_data`` when the mapping says so (their
        SKUs appended to ``created``), else PermanentError ``unmapped_product``."""
        realm, field = self.qbo.realm, self.mapping.item_match_field
        now = self.clock()
        refs: dict[str, str] = {}
        wanted: list[str] = []
        for sku in skus:
            cached = self.items_cache.get(realm, field, sku, now)
            if cached is not None:
                refs[sku] = cached
            else:
                wanted.append(sku)
        ambiguous: dict[str, list[str]] = {}  # SKU -> the ids of the items sharing it
        for start in range(0, len(wanted), SKUS_PER_QUERY):
            chunk = wanted[start:start + SKUS_PER_QUERY]
            listed = ", ".join(quote_value(sku) for sku in chunk)
            rows = self.qbo.query(f"select * from Item where {field} in ({listed}) maxresults 1000")
            matches: dict[str, list[dict[str, Any]]] = {}
            for row in rows:
                if row.get("Active") is not False and row.get(field) is not None:  # inactive: unmapped
                    matches.setdefault(str(row[field]).strip().casefold(), []).append(row)
            for sku in chunk:
                found = matches.get(sku.casefold(), [])
                if len(found) > 1:
                    ambiguous[sku] = [str(row["Id"]) for row in found]
                elif found:
                    refs[sku] = str(found[0]["Id"])
                    self.items_cache.put(realm, field, sku, refs[sku], now + self.mapping.item_cache_ttl_seconds)
        missing = [sku for sku in skus if sku not in refs and sku not in ambiguous]
        if missing and order_data is not None and not ambiguous:
            guid = str(placed_data(order_data).Order.OrderGuid)
            for sku, body in new_items(self.mapping, order_data, missing).items():
                refs[sku] = str(self._create_item(sku, body, guid)["Id"])
                self.items_cache.put(realm, field, sku, refs[sku], now + self.mapping.item_cache_ttl_seconds)
                if created is not None:
                    created.append(sku)
            missing = [sku for sku in missing if sku not in refs]
        if missing:
            raise PermanentError(f"unmapped product {', '.join(missing)}", reason="unmapped_product")
        if ambiguous:
            listed = ", ".join(f"{sku} (Items {', '.join(ids)})" for sku, ids in ambiguous.items())
            raise PermanentError(f"ambiguous product {listed}: several active QuickBooks items have that {field}",
                                 reason="ambiguous_product")
        return {sku: refs[sku] for sku in skus}

    def _create_item(self, sku: str, body: Mapping[str, Any], guid: str) -> dict[str, Any]:
        """Create the Item of an unknown product once. A retry after a lost answer sends the same requestid
        (QBO answers with the first create); a 6240 (Item names are unique) means a concurrent order created
        it, or another item holds the name: the holder is taken if it carries this SKU, else the item is
        named ``Name (SKU)``."""
        field = self.mapping.item_match_field
        request_id = f"{self.flow}:{guid}:item:{hashlib.sha256(sku.encode()).hexdigest()[:12]}"
        attempts = [dict(body)]
        if field == "Sku":
            attempts.append({**body, "Name": new_item_name(self.mapping, str(body["Name"]), sku=sku)})
        for attempt, item_body in enumerate(attempts):
            try:
                return self.qbo.create("Item", item_body, request_id + (":suffixed" if attempt else ""))
            except DuplicateNameError as exc:
                holder = self.qbo.query_one("Item", Name=item_body["Name"])
                if holder is not None and str(holder.get(field) or "").strip().casefold() == sku.casefold():
                    return holder
                if attempt == len(attempts) - 1:
                    raise PermanentError(
                        f"cannot create the QuickBooks item of product {sku}: the names "
                        f"{', '.join(repr(b['Name']) for b in attempts)} belong to other items",
                        reason="duplicate_name", target_status=exc.target_status,
                        target_response=exc.target_response) from exc
        raise AssertionError("unreachable")

    # ----------------------------------------------------------------- document

    def document(self, event: FlowEvent, state: Mapping[str, Any]) -> dict[str, Any]:
        """The order's SalesReceipt or Invoice: found if it exists, else created (unless the order was
        cancelled meanwhile)."""
        data = placed_data(event.data)
        order = data.Order
        guid = str(order.OrderGuid)
        entity = document_entity(self.mapping, order)
        number = document_number(self.mapping, event.data)
        existing = self._find_document(entity, number, guid)
        if existing is not None:
            return self._document_result(entity, existing, "existing")
        if is_cancelled(order) or self._cancelled_in_shop(order):
            currency, rate = order_currency(self.mapping, order)
            total = money(order.OrderTotal * rate) if rate is not None else money(order.OrderTotal)
            return {"entity": entity, "id": None, "doc_number": number, "total": total, "currency": currency,
                    "exchange_rate": exchange_rate(rate) if rate is not None else None,
                    "action": "skipped_cancelled", STEP_DROPPED: "cancelled_before_booking"}
        customer_id = self._step_result(state, "customer").get("id")
        if not customer_id:
            raise PermanentError("the document step needs the customer step's result", reason="missing_step_result")
        # resolved here, not taken from the items step's result: after a 610 the retry must see fresh ids
        refs = self._item_refs(item_skus(self.mapping, event.data), event.data)
        document = sales_document(self.mapping, event.data, customer_id=str(customer_id), item_refs=refs)
        # the references are part of the request id: a retry after a 610 sends other ids, and QBO would
        # answer the same requestid with the stored 610 again
        references = hashlib.sha256(repr((str(customer_id), sorted(refs.items()))).encode()).hexdigest()[:12]
        try:
            created = self.qbo.create(entity, document.body, f"{self.flow}:{guid}:{entity}:{references}")
        except PermanentError as exc:
            if exc.reason == "duplicate_document_number":
                again = self._find_document(entity, number, guid)
                if again is not None:  # a concurrent run created it
                    return self._document_result(entity, again, "existing")
                raise PermanentError(
                    f"QuickBooks {entity} DocNumber {number} belongs to another transaction, not to nopCommerce order "
                    f"{order.CustomOrderNumber} (OrderGuid {guid}): renumber one of them",
                    reason="duplicate_document_number", target_status=exc.target_status,
                    target_response=exc.target_response) from exc
            if exc.reason == "object_not_found" and ("ItemRef" in _fault_element(exc) or not _fault_element(exc)):
                self.items_cache.drop(self.qbo.realm, self.mapping.item_match_field, list(refs))
                raise RetryableError(f"a QuickBooks item of order {order.CustomOrderNumber} no longer exists: "
                                     "looking the products up again", reason="stale_item_ref",
                                     target_status=exc.target_status, target_response=exc.target_response) from exc
            raise
        return self._document_result(entity, created, "created")

    def _cancelled_in_shop(self, order: NopOrder) -> bool:
        # the event is a snapshot: the order may have been cancelled since (read once per run)
        current = self.shop.get_order(order.Id)
        status = current.get("order_status_id")
        return status is not None and int(status) == ORDER_CANCELLED

    def _document_result(self, entity: str, document: Mapping[str, Any], action: str) -> dict[str, Any]:
        ref = document.get("CurrencyRef")
        currency = (ref.get("value") if isinstance(ref, Mapping) else None) or self.mapping.home_currency
        rate = document.get("ExchangeRate") if currency != self.mapping.home_currency else None
        return {"entity": entity, "id": str(document["Id"]), "doc_number": document.get("DocNumber"),
                "total": _amount(document.get("TotalAmt")), "currency": currency,
                "exchange_rate": Decimal(str(rate)) if rate is not None else None, "action": action}

    def _find_document(self, entity: str, number: str, guid: str) -> dict[str, Any] | None:
        """This order's document of ``entity``: DocNumber matches and the PrivateNote names the OrderGuid
        (a number alone could be a bookkeeper's document)."""
        rows = self.qbo.query(f"select * from {entity} where DocNumber = {quote_value(number)}")
        return next((row for row in rows if owns(row, guid)), None)

    def _find_any_document(self, number: str, guid: str) -> tuple[str, dict[str, Any]] | None:
        for entity in (INVOICE, SALES_RECEIPT):
            found = self._find_document(entity, number, guid)
            if found is not None:
                return entity, found
        return None

    @staticmethod
    def _step_result(state: Mapping[str, Any], step: str) -> Mapping[str, Any]:
        result = state.get(step)
        return result if isinstance(result, Mapping) else {}

    # ----------------------------------------------------------------- payment

    def payment(self, event: FlowEvent, state: Mapping[str, Any]) -> dict[str, Any]:
        """order.paid: a Payment of what the customer paid, applied to the invoice (up to its open balance)."""
        order = parse_order(event.data)
        guid = str(order.OrderGuid)
        number = document_number(self.mapping, event.data)
        invoice = self._find_document(INVOICE, number, guid)
        if invoice is None:
            receipt = self._find_document(SALES_RECEIPT, number, guid)
            if receipt is not None:  # paid at checkout: the receipt is the payment
                return {"action": "not_needed", "entity": SALES_RECEIPT, "id": str(receipt["Id"]),
                        "doc_number": receipt.get("DocNumber")}
            raise OutOfOrderError(f"no QuickBooks document yet for order {order.CustomOrderNumber}",
                                  reason="document_missing")
        ref = invoice.get("CurrencyRef")
        currency = (ref.get("value") if isinstance(ref, Mapping) else None) or self.mapping.home_currency
        facts = {"invoice_id": str(invoice["Id"]), "doc_number": invoice.get("DocNumber"), "currency": currency}
        if _is_voided(invoice):
            return {"action": "flagged_for_review", "id": None, **facts, "amount": Decimal(0),
                    "reason": "invoice_voided"}
        balance = _amount(invoice.get("Balance"))
        if balance == 0:
            payments = _payment_ids(invoice)
            return {"action": "already_paid", "id": payments[-1] if payments else None, **facts,
                    "amount": _amount(invoice.get("TotalAmt"))}
        # the Payment is what the customer paid; an invoice that says otherwise (booked before documents
        # equalled OrderTotal, or edited since) keeps the difference visible: open, or unapplied credit
        received = self._received(order, currency) or balance
        applied = min(balance, received)
        note = f"nopCommerce order {order.CustomOrderNumber} (Id {order.Id}, OrderGuid {guid})"
        details = payment_details(self.mapping, order)
        if details.note():
            note += f"; {details.note()}"
        if received != balance:
            note += (f"; received {received} {currency}, Invoice {number} was open for {balance} {currency}: "
                     + (f"{received - applied} {currency} unapplied" if received > applied else
                        f"{balance - applied} {currency} left open"))
        body: dict[str, Any] = {
            "CustomerRef": {"value": str((invoice.get("CustomerRef") or {}).get("value"))},
            "TotalAmt": received,
            "Line": [{"Amount": applied, "LinkedTxn": [{"TxnId": str(invoice["Id"]), "TxnType": "Invoice"}]}],
            "PaymentRefNum": number,  # the DocNumber unless the provider's transaction id is known
            "PrivateNote": note,
            **details.fields(),
        }
        if order.PaidDateUtc is not None:
            body["TxnDate"] = txn_date(self.mapping, order.PaidDateUtc)
        if currency != self.mapping.home_currency:  # a payment is in its customer's (the invoice's) currency
            body["CurrencyRef"] = {"value": currency}
            if invoice.get("ExchangeRate") is not None:
                body["ExchangeRate"] = Decimal(str(invoice["ExchangeRate"]))
        created = self.qbo.create("Payment", body, f"{self.flow}:{guid}:payment")
        result = {"action": "created", "id": str(created["Id"]), **facts, "amount": received}
        if received > applied:
            result["unapplied"] = received - applied
        elif balance > applied:
            result["left_open"] = balance - applied
        return result

    def _received(self, order: NopOrder, currency: str) -> Decimal | None:
        """What the customer paid (OrderTotal, converted, to the cent), in the invoice's currency; None if the
        order's currency is not the invoice's (nothing to compare) or it paid nothing."""
        order_currency_code, rate = order_currency(self.mapping, order)
        if order_currency_code != currency:
            return None
        received = money(order.OrderTotal * rate) if rate is not None else money(order.OrderTotal)
        return received if received > 0 else None

    # ----------------------------------------------------------------- cancel

    def cancel(self, event: FlowEvent, state: Mapping[str, Any]) -> dict[str, Any]:
        """order.status_changed to Cancelled: void the unpaid Invoice (compensation); a paid document is
        flagged for review and left as it is."""
        order = parse_order(event.data)
        number = document_number(self.mapping, event.data)
        if not is_cancelled(order):
            return {"action": "not_cancelled", "entity": None, "id": None, "doc_number": number,
                    STEP_DROPPED: "not_cancelled"}
        guid = str(order.OrderGuid)
        found = self._find_any_document(number, guid)
        if found is None:  # never booked (cancelled first, or its order.placed is in the DLQ): a drop, said so
            return {"action": "nothing_to_void", "entity": None, "id": None, "doc_number": number,
                    STEP_DROPPED: "nothing_to_void"}
        entity, document = found
        for attempt in range(STALE_RETRIES + 1):
            facts = {"entity": entity, "id": str(document["Id"]), "doc_number": document.get("DocNumber")}
            if _is_voided(document):
                return {"action": "already_voided", **facts}
            paid = (entity == SALES_RECEIPT or bool(_payment_ids(document))
                    or _amount(document.get("Balance")) != _amount(document.get("TotalAmt")))
            if paid:
                return {"action": "flagged_for_review", **facts, "reason": "paid"}
            try:
                self.qbo.void(entity, str(document["Id"]), str(document["SyncToken"]), f"{self.flow}:{guid}:void")
                return {"action": "voided", **facts}
            except RetryableError as exc:
                if exc.reason != "stale_sync_token" or attempt == STALE_RETRIES:
                    raise
                document = self.qbo.read(entity, str(document["Id"]))  # a payment may have arrived: check again
        raise AssertionError("unreachable")

    # ----------------------------------------------------------------- refund

    def refund(self, event: FlowEvent, state: Mapping[str, Any]) -> dict[str, Any]:
        """order.refunded (PaymentStatusId 35/40): a RefundReceipt (the order's SalesReceipt) or a CreditMemo
        applied to the order's Invoice, of the newly refunded amount: nopCommerce's running RefundedAmount
        less what this order's refund documents already book. The running total is the create's requestid,
        so a redelivered refund, or one whose answer was lost, books nothing twice."""
        order = parse_order(event.data)
        guid = str(order.OrderGuid)
        number = document_number(self.mapping, event.data)
        total = refunded_total(self.mapping, order)
        if total is None:
            return {"action": "not_refunded", "entity": None, "id": None, "doc_number": number,
                    STEP_DROPPED: "not_refunded"}
        found = self._find_any_document(number, guid)
        if found is None:
            raise OutOfOrderError(f"no QuickBooks document yet for refunded order {order.CustomOrderNumber}",
                                  reason="document_missing")
        entity, document = found
        kind = REFUND_RECEIPT if entity == SALES_RECEIPT else CREDIT_MEMO
        customer_id = str((document.get("CustomerRef") or {}).get("value"))
        ref = document.get("CurrencyRef")
        currency = (ref.get("value") if isinstance(ref, Mapping) else None) or self.mapping.home_currency
        facts = {"entity": kind, "doc_type": entity, "doc_number": document.get("DocNumber"), "currency": currency,
                 "refunded_total": total}
        if _is_voided(document):
            raise PermanentError(f"nopCommerce order {order.CustomOrderNumber} was refunded, but its {entity} "
                                 f"{number} is voided in QuickBooks: nothing to refund against",
                                 reason="review_required")
        if total > _amount(document.get("TotalAmt")):
            raise PermanentError(f"nopCommerce order {order.CustomOrderNumber} refunded {total} {currency}, more "
                                 f"than its {entity} {number} ({_amount(document.get('TotalAmt'))} {currency})",
                                 reason="refund_exceeds_document")
        booked = [row for row in self.qbo.query(f"select * from {kind} where CustomerRef = {quote_value(customer_id)}"
                                                " maxresults 1000") if owns(row, guid)]
        already = sum((_amount(row.get("TotalAmt")) for row in booked), Decimal(0))
        amount = total - already
        result: dict[str, Any]
        if amount <= 0:
            latest = booked[-1] if booked else None
            # the latest refund document is this total's (a redelivery): its note, if not yet written, names it
            result = {"action": "already_refunded", "id": str(latest["Id"]) if latest else None, **facts,
                      "amount": _amount(latest.get("TotalAmt")) if latest else Decimal(0)}
        else:
            created = self.qbo.create(kind, self._refund_body(kind, order, document, currency, amount, total),
                                      f"{self.flow}:{guid}:refund:{total}")
            booked.append(created)
            result = {"action": "created", "id": str(created["Id"]), **facts, "amount": amount}
        if kind == CREDIT_MEMO:
            result["applied"] = self._apply_credit_memos(document, booked, guid)
        return result

    def _refund_body(self, kind: str, order: NopOrder, document: Mapping[str, Any], currency: str, amount: Decimal,
                     total: Decimal) -> dict[str, Any]:
        refund_item = self._item_refs([self.mapping.refund_sku])[self.mapping.refund_sku]
        body: dict[str, Any] = {
            "CustomerRef": {"value": str((document.get("CustomerRef") or {}).get("value"))},
            "Line": [{"DetailType": "SalesItemLineDetail", "Amount": amount,
                      "Description": self.mapping.refund_description.format(order_number=order.CustomOrderNumber),
                      "SalesItemLineDetail": {"ItemRef": {"value": refund_item}, "Qty": 1, "UnitPrice": amount}}],
            # the OrderGuid makes it this order's; the running total says which refund it books
            "PrivateNote": (f"nopCommerce order {order.CustomOrderNumber} (Id {order.Id}, OrderGuid "
                            f"{str(order.OrderGuid).lower()}); refund of {document.get('DocNumber')}: refunded "
                            f"total {total} {currency}"),
        }
        if currency != self.mapping.home_currency:  # the order's rate, as the document was booked with
            body["CurrencyRef"] = {"value": currency}
            if document.get("ExchangeRate") is not None:
                body["ExchangeRate"] = Decimal(str(document["ExchangeRate"]))
        if kind == REFUND_RECEIPT:
            body.update(payment_details(self.mapping, order).fields())
            if self.mapping.refund_account_id:
                body["DepositToAccountRef"] = {"value": self.mapping.refund_account_id}
        return body

    def _apply_credit_memos(self, invoice: Mapping[str, Any], memos: list[dict[str, Any]], guid: str) -> Decimal:
        """Apply this order's credit memos to its Invoice, up to the open balance (a zero Payment linking
        both, QBO's way); what is already paid stays as the customer's credit. Returns the amount applied now."""
        balance = _amount(self.qbo.read(INVOICE, str(invoice["Id"])).get("Balance"))
        applied_now = Decimal(0)
        for memo in memos:
            credit = _amount(self.qbo.read(CREDIT_MEMO, str(memo["Id"])).get("Balance"))
            applied = min(balance, credit)
            if applied <= 0:
                continue
            link = [{"Amount": applied, "LinkedTxn": [{"TxnId": str(invoice["Id"]), "TxnType": INVOICE}]},
                    {"Amount": applied, "LinkedTxn": [{"TxnId": str(memo["Id"]), "TxnType": CREDIT_MEMO}]}]
            body: dict[str, Any] = {"CustomerRef": {"value": str((invoice.get("CustomerRef") or {}).get("value"))},
                                    "TotalAmt": Decimal(0), "Line": link}
            if memo.get("CurrencyRef"):
                body["CurrencyRef"] = memo["CurrencyRef"]
            self.qbo.create("Payment", body, f"{self.flow}:{guid}:apply:{memo['Id']}:{applied}")
            balance -= applied
            applied_now += applied
        return applied_now

    # ----------------------------------------------------------------- write back

    def write_back(self, event: FlowEvent, state: Mapping[str, Any]) -> dict[str, Any]:
        """Tell nopCommerce what happened (an order note; after the document, the configured status). A paid
        document of a cancelled order gets its note, then PermanentError ``review_required``: the failure
        handler dead-letters the execution and the alarm is the flag."""
        order = parse_order(event.data)
        note: str | None = None
        review = False
        set_status = False
        reported = "cancel" if "cancel" in state else "payment" if "payment" in state else "document"
        if "refund" in state:
            result = self._step_result(state, "refund")
            reported = f"refund:{result.get('refunded_total')}"  # one note per refund, not per delivery
            if result.get("action") in ("created", "already_refunded") and result.get("id"):
                note = self.mapping.refund_note.format(
                    doc_type=result.get("entity"), refund_id=result.get("id"), doc_number=result.get("doc_number"),
                    amount=_amount(result.get("amount")), currency=result.get("currency"),
                    refunded_total=_amount(result.get("refunded_total")))
        elif "cancel" in state:
            result = self._step_result(state, "cancel")
            action = result.get("action")
            facts = {"doc_type": result.get("entity"), "doc_number": result.get("doc_number")}
            if action in ("voided", "already_voided"):
                note = self.mapping.void_note.format(**facts)
            elif action == "flagged_for_review":
                note, review = self.mapping.review_note.format(**facts), True
        elif "payment" in state:
            result = self._step_result(state, "payment")
            action = result.get("action")
            if action in ("created", "already_paid") and result.get("id"):
                note = self.mapping.payment_note.format(
                    payment_id=result.get("id"), doc_number=result.get("doc_number"), amount=result.get("amount"),
                    currency=result.get("currency"))
            elif action == "flagged_for_review":
                note, review = self.mapping.paid_voided_note.format(doc_number=result.get("doc_number")), True
        elif "document" in state:
            result = self._step_result(state, "document")
            if result.get("action") in ("created", "existing"):
                note = self.mapping.sent_note.format(doc_type=result.get("entity"), doc_number=result.get("doc_number"))
                set_status = self.mapping.set_status_id is not None
        else:
            raise PermanentError("write_back needs the result of the document, payment or cancel step",
                                 reason="missing_step_result")
        note_added = False
        if note is not None:
            note_added = self.shop.add_order_note(order.Id, note, display_to_customer=self.mapping.display_to_customer,
                                                  marker=note_marker(self.flow, str(order.OrderGuid), reported))
        status_changed = False
        if set_status and self.mapping.set_status_id is not None:
            status_changed = self.shop.set_order_status(order.Id, self.mapping.set_status_id,
                                                        only_from=sorted(self.mapping.set_status_only_from))
        if review:
            raise PermanentError(f"nopCommerce order {order.CustomOrderNumber}: {note}", reason="review_required")
        return {"note": note, "note_added": note_added, "status_changed": status_changed}
