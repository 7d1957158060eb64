"""nopCommerce webhook events, in nopCommerce's own entity and field names.

nopCommerce has no native webhooks; the documented source is a small plugin (docs/sources.md)
that consumes ``OrderPlacedEvent`` / ``OrderPaidEvent`` / ``EntityUpdatedEvent<Order>`` and posts
Standard Webhooks signed JSON: ``{"type": ..., "timestamp": ..., "data": {...}}``. Unknown extra
fields are kept (nopCommerce entities carry many more than the mapping needs).

Money is in the store's primary currency (API-NOTES 4.4); ``CurrencyRate`` converts it to the
customer's currency (``CustomerCurrencyCode`` units per primary-currency unit). The tax, shipping and
discount fields are optional so payloads of plugins that do not send them still validate.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

# nopCommerce enums (Nop.Core.Domain.*)
OrderStatusId = Literal[10, 20, 30, 40]  # Pending, Processing, Complete, Cancelled
PaymentStatusId = Literal[10, 20, 30, 35, 40, 50]  # Pending .. Voided
ShippingStatusId = Literal[10, 20, 25, 30, 40]

# Decimal accepts numbers and numeric strings; the schema says so exactly (ingest validates with it)
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=18, decimal_places=4),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0},
                              {"type": "string", "pattern": r"^\s*\+?\d{1,14}(\.\d{1,4})?\s*$"}]}),
]
# Order.CurrencyRate: customer currency units per primary-currency unit; zero would make every amount zero
Rate = Annotated[
    Decimal,
    Field(gt=0, max_digits=18, decimal_places=8),
    WithJsonSchema({"anyOf": [{"type": "number", "exclusiveMinimum": 0},
                              {"type": "string", "pattern": r"^\s*\+?(?=[0.]*[1-9])\d{1,10}(\.\d{1,8})?\s*$"}]}),
]


class _NopEntity(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class NopAddress(_NopEntity):
    FirstName: str | None = None
    LastName: str | None = None
    Email: str | None = None
    Company: str | None = None
    Address1: str | None = None
    Address2: str | None = None
    City: str | None = None
    ZipPostalCode: str | None = None
    PhoneNumber: str | None = None
    CountryId: int | None = None
    StateProvinceId: int | None = None


class NopCustomer(_NopEntity):
    Id: int
    Email: Annotated[str, Field(min_length=3, pattern=r"^\s*[^@\s]+@[^@\s]+\s*$")]  # trimmed by mappings
    FirstName: str | None = None
    LastName: str | None = None
    Company: str | None = None


class NopProduct(_NopEntity):
    Id: int
    Name: str
    Sku: str | None = None


class NopOrderItem(_NopEntity):
    Id: int
    ProductId: int
    Quantity: Annotated[int, Field(ge=1)]
    UnitPriceInclTax: Money
    PriceInclTax: Money
    UnitPriceExclTax: Money | None = None
    PriceExclTax: Money | None = None
    Product: NopProduct | None = None


class NopOrder(_NopEntity):
    Id: int
    OrderGuid: UUID
    CustomOrderNumber: Annotated[str, Field(min_length=1)]
    OrderStatusId: OrderStatusId
    PaymentStatusId: PaymentStatusId
    ShippingStatusId: ShippingStatusId
    OrderTotal: Money
    CustomerCurrencyCode: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    CreatedOnUtc: datetime
    CurrencyRate: Rate = Decimal(1)
    OrderSubtotalExclTax: Money | None = None
    OrderSubTotalDiscountExclTax: Money | None = None  # a discount on the subtotal (before shipping and tax)
    OrderShippingExclTax: Money | None = None
    OrderTax: Money | None = None
    OrderDiscount: Money | None = None  # a discount on the order total
    PaidDateUtc: datetime | None = None


class OrderPlacedData(_NopEntity):
    Order: NopOrder
    OrderItems: Annotated[list[NopOrderItem], Field(min_length=1)]
    Customer: NopCustomer
    BillingAddress: NopAddress
    ShippingAddress: NopAddress | None = None


class OrderStatusChangedData(_NopEntity):
    Order: NopOrder
    Customer: NopCustomer | None = None


class OrderPlaced(BaseModel):
    type: Literal["order.placed"]
    timestamp: datetime
    data: OrderPlacedData


class OrderStatusChanged(BaseModel):
    type: Literal["order.status_changed"]
    timestamp: datetime
    data: OrderStatusChangedData


class OrderPaid(BaseModel):
    """``OrderPaidEvent``: the payment was captured (PaymentStatusId is Paid); same data as a status change."""

    type: Literal["order.paid"]
    timestamp: datetime
    data: OrderStatusChangedData


NopCommerceEvent = Annotated[OrderPlaced | OrderStatusChanged | OrderPaid, Field(discriminator="type")]
