"""A product edited in the shop updates its QuickBooks Item's name and price (flow
``nopcommerce-products-to-quickbooks``, mapping ``nopcommerce-products-to-quickbooks.yaml``).

The document opts in (``update_items: true``; false records each edit as ``filtered``), says which QuickBooks
Item field holds the product's key (``match_on``: Sku or Name, as the order flow's ``items.match_on``) and
which product field becomes which Item field (``item.name``, ``item.unit_price``; ``null`` leaves one alone),
in the rule language of every mapping document over the event's ``Product``.

What stays in code: the Item is found by an exact, case-blind match among active Items (several: dead-lettered
as ``ambiguous_product``; none: ``filtered``, since an order creates it when its flow says so); only fields
whose value differs are sent, as a sparse update with the Item's ``SyncToken``, so a redelivery writes nothing;
a stale ``SyncToken`` (5010: someone edited the Item meanwhile) re-reads the Item and applies the change again,
at most ``STALE_RETRIES`` times; a name QuickBooks would refuse loses its ``:`` (the sub-item separator), its
runs of whitespace and whatever passes 100 characters; a name another Item holds (6240) is dead-lettered with
both names. Edits are ordered per product by the event's time (``UpdatedOnUtc``): an older edit arriving after a
newer one is ``stale``. The Item update QuickBooks then notifies comes back through ``quickbooks-to-nopcommerce``
as a stock read that finds nothing to change, so there is no loop.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from switchyard.catalog import mapping_path
from switchyard.entity_state import EntityState
from switchyard.errors import DuplicateNameError, MappingError, PermanentError, RetryableError
from switchyard.events import FlowEvent
from switchyard.mapping.rules import compile_rules
from switchyard.targets import DeliveryResult

QBO_NAME_MAX = 100
STALE_RETRIES = 3  # re-reads after a 5010 before the event is retried as a whole
UPDATE_ITEM = "update_item"
_SPACES = re.compile(r"\s+")
Rule = dict[str, Any]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ItemFieldsDoc(_Doc):
    name: Rule | None = Field(default_factory=lambda: {"path": "Product.Name"})
    unit_price: Rule | None = Field(default_factory=lambda: {"path": "Product.Price"})


class ItemUpdateDoc(_Doc):
    flow: str = Field(min_length=1)
    target: Literal["quickbooks"]
    source: Literal["nopcommerce"] = "nopcommerce"
    description: str = ""
    events: dict[str, Literal["update_item"]]
    update_items: bool  # the flow's opt-in, said explicitly
    lookups: dict[str, dict[str | int, Any]] = Field(default_factory=dict)
    match_on: Literal["Sku", "Name"] = "Sku"
    item_key: Rule = Field(default_factory=lambda: {"path": "Product.Sku", "transforms": ["trim", "empty_to_null"]})
    item: ItemFieldsDoc = Field(default_factory=ItemFieldsDoc)
    colon_replacement: str = Field(default="-", max_length=3, pattern=r"^[^:]*$")

    @model_validator(mode="after")
    def _checked(self) -> ItemUpdateDoc:
        if self.item.name is None and self.item.unit_price is None:
            raise ValueError("item: name and unit_price are both null: nothing to update")
        if self.match_on == "Name" and self.item.name is not None:
            raise ValueError("match_on: Name finds the Item by its name, so item.name must be null")
        return self


@dataclass(frozen=True)
class ItemChange:
    key: str | None
    name: str | None
    unit_price: Decimal | None


class ItemUpdateMapping:
    def __init__(self, doc: ItemUpdateDoc) -> None:
        self.doc = doc
        self.events: dict[str, str] = dict(doc.events)
        self._values = compile_rules([(f"{doc.flow}: item_key", doc.item_key),
                                      (f"{doc.flow}: item.name", doc.item.name or {"const": None}),
                                      (f"{doc.flow}: item.unit_price", doc.item.unit_price or {"const": None})],
                                     doc.lookups)

    def change(self, data: Mapping[str, Any]) -> ItemChange:
        key, name, price = self._values(data)
        return ItemChange(key=str(key).strip() or None if key is not None else None,
                          name=self.item_name(name) if name is not None else None,
                          unit_price=_price(price) if price is not None else None)

    def item_name(self, value: Any) -> str | None:
        """A Name QuickBooks takes: no ':' (sub-items), whitespace collapsed, at most 100 characters."""
        cleaned = _SPACES.sub(" ", str(value).replace(":", self.doc.colon_replacement)).strip()
        return cleaned[:QBO_NAME_MAX].rstrip() or None

    def dry_run(self, event_type: str, data: Mapping[str, Any]) -> tuple[str, Any]:
        action = self.events.get(event_type)
        if action is None:
            raise MappingError(f"{self.doc.flow} does not handle event type {event_type!r}")
        if not self.doc.update_items:
            return "none", {"reason": "update_items is false: product edits do not change QuickBooks Items"}
        change = self.change(data)
        body: dict[str, Any] = {}
        if change.name is not None:
            body["Name"] = change.name
        if change.unit_price is not None:
            body["UnitPrice"] = change.unit_price
        return action, {"item": f"the active Item whose {self.doc.match_on} is {change.key!r}",
                        "sparse_update_if_different": body}


def _price(value: Any) -> Decimal:
    try:
        price = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise PermanentError(f"the product's price is not a number: {value!r}", reason="invalid_event") from None
    if not price.is_finite() or price < 0:
        raise PermanentError(f"the product's price is not a price: {value!r}", reason="invalid_event")
    return price


def parse_item_update_mapping(text: str, *, name: str) -> ItemUpdateMapping:
    try:
        return ItemUpdateMapping(ItemUpdateDoc.model_validate(yaml.safe_load(text)))
    except (yaml.YAMLError, ValidationError) as exc:
        raise MappingError(f"{name}: {exc}") from None


@cache
def load_item_update_mapping(file_name: str) -> ItemUpdateMapping:
    return parse_item_update_mapping(mapping_path(file_name).read_text(), name=file_name)


def is_item_update_document(file_name: str) -> bool:
    """Whether a QuickBooks flow's document is this kind (it opts in or out with ``update_items``), not the
    order-to-cash one."""
    try:
        document = yaml.safe_load(mapping_path(file_name).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(document, dict) and "update_items" in document


class Items(Protocol):
    def query(self, sql: str) -> list[dict[str, Any]]: ...
    def read(self, entity: str, entity_id: str) -> dict[str, Any]: ...
    def sparse_update(self, entity: str, entity_id: str, sync_token: str, changes: Mapping[str, Any],
                      request_id: str) -> dict[str, Any]: ...


def entity_key(product_id: Any) -> str:
    """The EntityState key that orders one shop product's edits."""
    return f"nopcommerce-product:{product_id}"


class QuickBooksItemUpdateTarget:
    def __init__(self, mapping: ItemUpdateMapping, qbo: Items, state: EntityState) -> None:
        self._mapping = mapping
        self._qbo = qbo
        self._state = state

    def deliver(self, event: FlowEvent) -> DeliveryResult:
        if event.type not in self._mapping.events:
            raise PermanentError(f"flow {event.flow} does not handle {event.type}", reason="unsupported_event")
        product = event.data.get("Product") if isinstance(event.data, Mapping) else None
        if not isinstance(product, Mapping) or product.get("Id") is None:
            raise PermanentError(f"{event.type} event {event.event_id} has no Product.Id", reason="malformed_event")
        product_id = product["Id"]
        if not self._mapping.doc.update_items:
            return DeliveryResult("filtered", {"reason": "update_items is false in the flow's mapping",
                                               "product": product_id})
        if product.get("Deleted"):
            return DeliveryResult("filtered", {"reason": "the product is deleted", "product": product_id})
        change = self._mapping.change(event.data)
        if change.key is None:
            return DeliveryResult("filtered", {"reason": f"the product has no {self._mapping.doc.match_on} key",
                                               "product": product_id})
        if not self._state.claim(entity_key(product_id), event.timestamp, event.event_id):
            return DeliveryResult("stale", {"product": product_id, "key": change.key})
        item = self._find(change.key)
        if item is None:
            return DeliveryResult("filtered", {"reason": f"no active QuickBooks Item has {self._mapping.doc.match_on} "
                                                         f"{change.key!r}", "product": product_id})
        detail: dict[str, Any] = {"product": product_id, "item": str(item["Id"]), "key": change.key}
        for attempt in range(STALE_RETRIES + 1):
            changes = _changes(item, change)
            if not changes:
                return DeliveryResult("unchanged", detail)
            try:
                self._qbo.sparse_update("Item", str(item["Id"]), str(item["SyncToken"]), changes,
                                        f"{event.flow}:{event.event_id}:item")
            except RetryableError as exc:
                if exc.reason != "stale_sync_token" or attempt == STALE_RETRIES:
                    raise
                item = self._qbo.read("Item", str(item["Id"]))  # someone edited it meanwhile: apply to theirs
                continue
            except DuplicateNameError as exc:
                raise PermanentError(f"QuickBooks Item {item['Id']} cannot be renamed {changes.get('Name')!r} "
                                     f"(from {item.get('Name')!r}): another item holds that name",
                                     reason="duplicate_name", target_status=exc.target_status,
                                     target_response=exc.target_response) from exc
            return DeliveryResult("updated", {**detail, "fields": sorted(changes)})
        raise AssertionError("unreachable")

    def _find(self, key: str) -> dict[str, Any] | None:
        from switchyard.systems.quickbooks.client import quote_value

        field = self._mapping.doc.match_on
        rows = self._qbo.query(f"select * from Item where {field} = {quote_value(key)} maxresults 1000")
        found = [row for row in rows if row.get("Active") is not False
                 and str(row.get(field) or "").strip().casefold() == key.casefold()]
        if len(found) > 1:
            raise PermanentError(f"ambiguous product {key}: QuickBooks Items {', '.join(str(r['Id']) for r in found)} "
                                 f"have that {field}", reason="ambiguous_product")
        return found[0] if found else None


def _changes(item: Mapping[str, Any], change: ItemChange) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if change.name is not None and item.get("Name") != change.name:
        changes["Name"] = change.name
    if change.unit_price is not None:
        try:
            held = Decimal(str(item.get("UnitPrice")))
        except (InvalidOperation, ValueError):
            held = None
        if held != change.unit_price:
            changes["UnitPrice"] = change.unit_price
    return changes
