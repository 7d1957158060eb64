"""Clarity eCommerce webhook events (the contract in docs/clarity-contract.md), camelCase.

Standard Webhooks envelope ``{"type", "timestamp", "data"}``; ``data`` is the order (with the
customer embedded) or the customer. Unknown extra fields are kept.
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
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0},
                              {"type": "string", "pattern": r"^\s*\+?\d{1,14}(\.\d{1,4})?\s*$"}]}),
]
Email = Annotated[str, Field(min_length=3, pattern=r"^\s*[^@\s]+@[^@\s]+\s*$")]  # trimmed by mappings


class _ClarityEntity(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class ClarityCustomer(_ClarityEntity):
    customerId: Annotated[str, Field(min_length=1)]
    firstName: str | None = None
    lastName: str | None = None
    email: Email
    phone: str | None = None
    company: str | None = None


class ClarityLineItem(_ClarityEntity):
    sku: Annotated[str, Field(min_length=1)]
    name: str
    quantity: Annotated[int, Field(ge=1)]
    unitPrice: Money


class ClarityPaymentInfo(_ClarityEntity):
    method: str
    status: str
    maskedCard: Annotated[str, Field(pattern=r"^[*xX\s-]*\d{0,4}$")] | None = None  # never a full number


class ClarityOrder(_ClarityEntity):
    orderId: Annotated[str, Field(min_length=1)]
    customerId: Annotated[str, Field(min_length=1)]
    orderDate: datetime
    status: OrderStatus
    totalAmount: Money
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    lineItems: Annotated[list[ClarityLineItem], Field(min_length=1)]
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


ClarityEvent = Annotated[OrderCreated | OrderStatusChanged | CustomerUpdated, Field(discriminator="type")]
