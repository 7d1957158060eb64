"""The nopcommerce-to-streak mapping written by hand in Python: the baseline the declarative
mapping is measured against. It must produce exactly the same plan (the benchmark checks)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from hashlib import sha256
from typing import Any

from switchyard.systems.streak.deal_mapping import MINOR_UNITS, ContactPlan, DealPlan, OrganizationPlan, TaskPlan

STAGES = {10: "5001", 20: "5002", 30: "5003", 40: "5004"}
PAYMENT = {10: "9001", 20: "9002", 30: "9003", 35: "9004", 40: "9005", 50: "9006"}
COUNTRIES = {1: "US", 2: "CA", 73: "FR"}
PUBLIC = {"gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "yahoo.com", "icloud.com", "proton.me"}


def _ms(value: str, days: int = 0) -> int:
    moment = datetime.fromisoformat(value)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return int((moment + timedelta(days=days)).timestamp() * 1000)


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _blank_to_none(value: Any) -> Any:
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _shown(total: Any, rate: Any, currency: str) -> int | float:
    """The total in the customer's currency, rounded half up to its minor unit (as box.amount does)."""
    amount = Decimal(str(total)) * Decimal(str(rate))
    return _number(amount.quantize(Decimal(1).scaleb(-MINOR_UNITS.get(currency, 2)), rounding=ROUND_HALF_UP))


def _address(address: Any) -> dict[str, str]:
    if not isinstance(address, dict):
        return {}
    province = address.get("StateProvince") or {}
    parts = {
        "street": " ".join(f"{address.get('Address1') or ''} {address.get('Address2') or ''}".split()),
        "city": address.get("City"),
        "state": province.get("Abbreviation") or province.get("Name"),
        "postal_code": address.get("ZipPostalCode"),
        "country": COUNTRIES.get(address.get("CountryId")),
    }
    return {part: text for part, value in parts.items() if value is not None and (text := str(value).strip())}


def _one_line(parts: dict[str, str]) -> str:
    region = " ".join(p for p in (parts.get("state"), parts.get("postal_code")) if p)
    return ", ".join(p for p in (parts.get("street"), parts.get("city"), region, parts.get("country")) if p)


ADDRESS_FIELDS = {"billing": ("1021", "1022", "1023", "1024", "1025"),
                  "shipping": ("1026", "1027", "1028", "1029", "1030")}
PARTS = ("street", "city", "state", "postal_code", "country")


NORTH_AMERICA = ("ana.north@example.com", "ben.north@example.com", "carla.north@example.com")
EUROPE = ("chloe.europe@example.com", "dan.europe@example.com")
ACME = re.compile(r"(?i)^\s*acme\b")


def _assignee(order: dict[str, Any], company: Any, country: Any, number: str) -> str:
    def pick(team: tuple[str, ...]) -> str:
        return team[int.from_bytes(sha256(number.encode()).digest()[:8], "big") % len(team)]

    if Decimal(str(order["OrderTotal"])) >= 5000:
        return "kim.accounts@example.com"
    if company is not None and ACME.search(str(company)):
        return "kim.accounts@example.com"
    if str(order.get("StoreId")) == "2" or str(country) == "73":
        return pick(EUROPE)
    return pick(NORTH_AMERICA)


def _contact_fields(data: dict[str, Any]) -> dict[str, Any]:
    phone = _blank_to_none((data.get("BillingAddress") or {}).get("PhoneNumber")) or \
        _blank_to_none(data["Customer"].get("Phone"))
    fields: dict[str, Any] = {"phoneNumbers": [phone]} if phone else {}
    fields["other"] = f"nopCommerce customer {data['Customer'].get('Id')}"
    return fields


def plan_deal(data: dict[str, Any]) -> DealPlan:
    order, customer = data["Order"], data["Customer"]
    number = order["CustomOrderNumber"]
    company = customer.get("Company")
    has_company = company is not None and str(company).strip() != ""
    email = customer["Email"].strip().lower()
    first, last = customer.get("FirstName"), customer.get("LastName")
    name = f"Order {number} · {first or ''} {last or ''} {company or ''}"
    addresses = {kind: parts for kind, parts in (("billing", _address(data.get("BillingAddress"))),
                                                  ("shipping", _address(data.get("ShippingAddress")))) if parts}
    organization = None
    if has_company:
        domain = email.rpartition("@")[2] or None
        billing = data.get("BillingAddress") or {}
        org_fields: dict[str, Any] = {}
        if phone := _blank_to_none(billing.get("PhoneNumber")):
            org_fields["phoneNumbers"] = [phone]
        if vat := _blank_to_none(customer.get("VatNumber")):
            org_fields["other"] = f"VAT number {vat}"
        organization = OrganizationPlan(name=company.strip(), domain=None if domain in PUBLIC else domain,
                                        addresses=(_one_line(addresses["billing"]),) if "billing" in addresses else (),
                                        fields=org_fields)
    items = "; ".join(
        " ".join(f"{i['Quantity']} x {i['Product']['Name']} [{i['Product']['Sku']}]".split())
        for i in data["OrderItems"]
    )
    create = Decimal(str(order["OrderTotal"])) >= 100 or has_company
    fields = {
        "1001": number,
        "1003": _ms(order["CreatedOnUtc"]),
        "1004": PAYMENT[order["PaymentStatusId"]],
        "1005": items[:2000],
    }
    if create:  # the amount in the currency it is labelled with
        currency = order["CustomerCurrencyCode"].strip().upper()
        fields.update({"1002": _shown(order["OrderTotal"], order["CurrencyRate"], currency), "1006": currency})
    for kind, parts in addresses.items():
        fields.update({key: parts[part] for key, part in zip(ADDRESS_FIELDS[kind], PARTS, strict=True)
                       if part in parts})
    assignee = _assignee(order, company, (data.get("BillingAddress") or {}).get("CountryId"), number) \
        if create else None
    return DealPlan(
        order_key=number,
        create=create,
        box_name=" ".join(name.split()),
        stage_key=STAGES[order["OrderStatusId"]],
        notes=f"nopCommerce order {order['Id']} ({order['OrderGuid']})",
        fields=fields,
        contact=ContactPlan(email=email, given_name=_blank_to_none(first), family_name=_blank_to_none(last),
                            fields=_contact_fields(data)),
        organization=organization,
        task=TaskPlan(text=f"Follow up on order {number}", due_date_ms=_ms(order["CreatedOnUtc"], days=3),
                      assignee_email=assignee),
        addresses=addresses,
        assignee=assignee,
    )
