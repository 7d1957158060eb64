"""nopCommerce webhook events, in nopCommerce's own entity and field names.

nopCommerce has no native webhooks; the documented source is a small plugin (docs/sources.md)
that consumes ``OrderPlacedEvent`` / ``OrderPaidEvent`` / ``EntityUpdatedEvent<Order>`` and posts
Standard Webhooks signed JSON: ``{"type": ..., "timestamp": ..., "data": {...}}``. Unknown extra
fields are kept (nopCommerce entities carry many more than the mapping needs).

Money is in the store's primary currency (API-NOTES 4.4); ``CurrencyRate`` converts it to the
customer's currency (``CustomerCurrencyCode`` units per primary-currency unit). The tax, shipping and
discount fields are optional so payloads of plugins that do not send them still validate.

Every string and number is bounded by what nopCommerce can hold (``Nop.Data`` mapping builders):
ids are ``int`` (Int32) columns, money is ``decimal(18,4)``, product names and SKUs ``nvarchar(400)``.
Free-text columns that are ``nvarchar(max)`` get the length a real order never exceeds
(``CustomOrderNumber`` comes from the order-number mask, e.g. ``{YYYY}-{ID}``: 100 characters).
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

INT32_MAX = 2_147_483_647
NopId = Annotated[int, Field(ge=0, le=INT32_MAX)]  # Id columns are Int32
Text = Annotated[str, Field(max_length=400)]  # names, address lines, phone numbers, SKUs
EmailAddress = Annotated[str, Field(min_length=3, max_length=254,  # RFC 5321: a deliverable address
                                    pattern=r"^\s*[^@\s]+@[^@\s]+\s*$")]  # trimmed by mappings

# Decimal accepts numbers and numeric strings; the schema says so exactly (ingest validates with it).
# decimal(18,4): at most 14 digits before the point
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=18, decimal_places=4),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0, "exclusiveMaximum": 1e14},
                              {"type": "string", "pattern": r"^\s*\+?\d{1,14}(\.\d{1,4})?\s*$"}]}),
]
# Order.CurrencyRate: customer currency units per primary-currency unit; zero would make every amount zero
Rate = Annotated[
    Decimal,
    Field(gt=0, max_digits=18, decimal_places=8),
    WithJsonSchema({"anyOf": [{"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1e10},
                              {"type": "string", "pattern": r"^\s*\+?(?=[0.]*[1-9])\d{1,10}(\.\d{1,8})?\s*$"}]}),
]


# Custom attributes as the webhook plugin resolves them from nopCommerce's XML (``CustomCustomerAttributesXML``,
# the order's ``CustomValuesXml``): attribute name -> the value shown, e.g. {"Customer Type": "B2B"}
NopCustomAttributes = Annotated[dict[Annotated[str, Field(min_length=1, max_length=400)],
                                  Annotated[str, Field(max_length=4000)]], Field(max_length=100)]


class _NopEntity(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class NopAddress(_NopEntity):
    FirstName: Text | None = None
    LastName: Text | None = None
    Email: Annotated[str, Field(max_length=254)] | None = None
    Company: Text | None = None
    Address1: Text | None = None
    Address2: Text | None = None
    City: Text | None = None
    ZipPostalCode: Text | None = None
    PhoneNumber: Text | None = None
    CountryId: NopId | None = None
    StateProvinceId: NopId | None = None
    # resolved by the webhook plugin from the Country / StateProvince tables, when it sends them
    CountryTwoLetterIsoCode: Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")] | None = None
    StateProvinceAbbreviation: Annotated[str, Field(max_length=100)] | None = None


class NopCustomer(_NopEntity):
    Id: NopId
    Email: EmailAddress
    FirstName: Text | None = None
    LastName: Text | None = None
    Company: Text | None = None
    CustomAttributes: NopCustomAttributes | None = None


class NopProduct(_NopEntity):
    Id: NopId
    Name: Text
    Sku: Text | None = None


class NopOrderItem(_NopEntity):
    Id: NopId
    ProductId: NopId
    Quantity: Annotated[int, Field(ge=1, le=INT32_MAX)]
    UnitPriceInclTax: Money
    PriceInclTax: Money
    UnitPriceExclTax: Money | None = None
    PriceExclTax: Money | None = None
    Product: NopProduct | None = None


class NopOrder(_NopEntity):
    Id: NopId
    OrderGuid: UUID
    CustomOrderNumber: Annotated[str, Field(min_length=1, max_length=100)]
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
    CustomAttributes: NopCustomAttributes | None = None
    RefundedAmount: Money | None = None  # what was refunded so far (order.refunded)


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


class OrderRefunded(BaseModel):
    """``OrderRefundedEvent`` (or a poll seeing ``RefundedAmount`` grow): PaymentStatusId 35 (partially) or 40."""

    type: Literal["order.refunded"]
    timestamp: datetime
    data: OrderStatusChangedData


class NopProductChange(_NopEntity):
    """The product as ``EntityUpdatedEvent<Product>`` carries it (the sender plugin posts the entity)."""

    Id: Annotated[int, Field(ge=1, le=INT32_MAX)]
    Name: Text
    Sku: Text | None = None
    Price: Money
    Published: bool = True
    Deleted: bool = False
    UpdatedOnUtc: datetime | None = None


class ProductUpdatedData(_NopEntity):
    Product: NopProductChange


class ProductUpdated(BaseModel):
    """``EntityUpdatedEvent<Product>``: an admin saved the product (name, price, stock, ...); ``timestamp`` is
    its ``UpdatedOnUtc``."""

    type: Literal["product.updated"]
    timestamp: datetime
    data: ProductUpdatedData


NopCommerceEvent = Annotated[OrderPlaced | OrderStatusChanged | OrderPaid | OrderRefunded | ProductUpdated,
                             Field(discriminator="type")]
