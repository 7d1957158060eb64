"""Clarity eCommerce webhook events (the contract in docs/clarity-contract.md), camelCase.

Standard Webhooks envelope ``{"type", "timestamp", "data"}``; ``data`` is the order (with the
customer embedded), the customer, the product or the product's stock level. Unknown extra fields
are kept. Strings and numbers are bounded as the contract bounds them (docs/clarity-contract.md, "Limits").
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

OrderStatus = Literal["pending", "processing", "shipped", "delivered", "cancelled", "refunded"]

Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=18, decimal_places=4),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0, "exclusiveMaximum": 1e14},
                              {"type": "string", "pattern": r"^\s*\+?\d{1,14}(\.\d{1,4})?\s*$"}]}),
]
Email = Annotated[str, Field(min_length=3, max_length=254,
                             pattern=r"^\s*[^@\s]+@[^@\s]+\s*$")]  # trimmed by mappings
Key = Annotated[str, Field(min_length=1, max_length=64)]  # orderId, customerId, sku
Name = Annotated[str, Field(max_length=200)]
Code = Annotated[str, Field(max_length=50)]  # payment method and status


class _ClarityEntity(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class ClarityCustomer(_ClarityEntity):
    customerId: Key
    firstName: Name | None = None
    lastName: Name | None = None
    email: Email
    phone: Annotated[str, Field(max_length=50)] | None = None
    company: Name | None = None


class ClarityLineItem(_ClarityEntity):
    sku: Key
    name: Annotated[str, Field(max_length=400)]
    quantity: Annotated[int, Field(ge=1, le=1_000_000)]
    unitPrice: Money


class ClarityPaymentInfo(_ClarityEntity):
    method: Code
    status: Code
    maskedCard: Annotated[str, Field(pattern=r"^[*xX\s-]*\d{0,4}$")] | None = None  # never a full number


class ClarityOrder(_ClarityEntity):
    orderId: Key
    customerId: Key
    orderDate: datetime
    status: OrderStatus
    totalAmount: Money
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    lineItems: Annotated[list[ClarityLineItem], Field(min_length=1, max_length=1000)]
    paymentInfo: ClarityPaymentInfo | None = None
    customer: ClarityCustomer
    shippingAddress: dict | None = None
    billingAddress: dict | None = None


class ClarityOrderChange(ClarityOrder):
    previousStatus: OrderStatus | None = None


class OrderCreated(BaseModel):
    type: Literal["order.created"]
    timestamp: datetime
    data: ClarityOrder


class OrderStatusChanged(BaseModel):
    type: Literal["order.status_changed"]
    timestamp: datetime
    data: ClarityOrderChange


class CustomerUpdated(BaseModel):
    type: Literal["customer.updated"]
    timestamp: datetime
    data: ClarityCustomer


class CustomerCreated(BaseModel):
    type: Literal["customer.created"]
    timestamp: datetime
    data: ClarityCustomer


class ClarityProduct(_ClarityEntity):
    sku: Key
    name: Annotated[str, Field(min_length=1, max_length=400)]
    price: Money
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    active: Annotated[bool, Field(strict=True)]  # "yes" is not a boolean
    version: Annotated[int, Field(ge=1)]


class ProductCreated(BaseModel):
    type: Literal["product.created"]
    timestamp: datetime
    data: ClarityProduct


class ProductUpdated(BaseModel):
    type: Literal["product.updated"]
    timestamp: datetime
    data: ClarityProduct


class ClarityStockLevel(_ClarityEntity):
    sku: Key
    quantityOnHand: Annotated[int, Field(ge=-1_000_000_000, le=1_000_000_000)]  # negative when oversold
    version: Annotated[int, Field(ge=1)]


class InventoryChanged(BaseModel):
    type: Literal["inventory.changed"]
    timestamp: datetime
    data: ClarityStockLevel


ClarityEvent = Annotated[
    OrderCreated | OrderStatusChanged | CustomerCreated | CustomerUpdated | ProductCreated | ProductUpdated
    | InventoryChanged,
    Field(discriminator="type"),
]
