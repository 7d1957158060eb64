"""Stateful in-memory nopCommerce shop behind the commercial "Web API Backend" plugin (4.60 era).

Switchyard writes back to nopCommerce (order notes, order status, product stock) through the plugin's
``api-backend/[controller]/[action]`` routes; this sandbox answers those routes with the plugin's real
paths, JSON shapes and error bodies, so connector tests and the local demo never need a real shop.

Usage::

    with NopCommerceSandbox() as shop:                      # serves on 127.0.0.1:<free port>
        order = shop.seed_order({"OrderTotal": 129.5, "CustomerCurrencyCode": "EUR"})
        client = httpx.Client(base_url=shop.base_url)
        token = client.post("/api-backend/Authenticate/GetToken",
                            json={"email": DEFAULT_API_EMAIL, "password": DEFAULT_API_PASSWORD}).json()["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        dto = client.get(f"/api-backend/Order/GetById/{order['id']}").json()
        client.put("/api-backend/Order/Update", json={**dto, "order_status_id": 20})   # read-modify-write

or in-process: ``httpx.Client(transport=httpx.WSGITransport(app=shop.wsgi_app), ...)``.

What the plugin source (``uskudaristanbul/nopCommerce``, ``src/Plugins/Nop.Plugin.Misc.WebApi.*``) shows,
and this sandbox therefore does:

* **JSON is snake_case on the wire.** Every DTO derives from ``BaseDto``, which carries
  ``[JsonObject(NamingStrategyType = typeof(SnakeCaseNamingStrategy))]`` (Newtonsoft), so ``OrderStatusId``
  travels as ``order_status_id`` and ``Id`` as ``id``. Incoming names match exactly or case-insensitively
  (``Id``/``ID`` bind to ``id``), **anything else is silently ignored** -- a PascalCase ``OrderStatusId``
  in an update body is dropped and, because Update replaces the whole entity, the field is reset to 0.
  Ignored names are recorded in ``sandbox.ignored_fields`` (sandbox-only) so tests can catch that.
* **Update replaces the entity** (``model.FromDto<Order>()`` then ``UpdateOrderAsync``): fields not sent
  become the DTO defaults (0, false, null, ``0001-01-01T00:00:00``, the empty GUID); no concurrency check;
  200 with an empty body. Callers must read-modify-write.
* **Errors**: 404 bodies are JSON strings (``"Order Id=5 not found"``, ``"Order is not found"``);
  401 is ``{"message": "Unauthorized"}`` and 403 ``{"message": "Access denied."}`` (``JsonResult`` in the
  plugin's filters); a failed login is **400** ``{"message": "Username or password is incorrect",
  "inner_exception_message": null, "stack_trace": ""}`` (``NopException`` through ``ErrorHandlerMiddleware``).
  ``BadRequest()`` and model-binding failures come back as ASP.NET Core ``[ApiController]`` problem
  details (``application/problem+json``), not as empty bodies.
* **Permission**: ``GetToken`` does not check ``AccessWebApiBackend``; a customer without it gets a token
  and every backend call then answers 403.
* **Tokens** are HS256 JWTs (claims ``nbf``, ``exp``, ``CustomerId``, name identifier, e-mail) valid for
  ``token_lifetime_days`` (plugin default 7) with zero clock skew. ``developer_mode=True`` lets requests
  through without any token, as the plugin's ``DeveloperMode`` does -- it must be off in production.
* Dates are rendered like Newtonsoft renders a ``DateTime`` read from the database: ISO 8601 **without an
  offset** (``2024-05-01T12:00:00``), UTC by nopCommerce convention.
* Action names are the plugin's: ``OrderNote/GetOrderNotesByOrderId/{orderId}``, ``OrderNote/Delete/{id}``
  (200 with an empty body), ``Product/GetProductBySku?sku=``, ``Product/AdjustInventory/{productId}?quantityToChange=``.
* **Slow answers** (``slow_next``): a request answered after the client's timeout, carried out either just
  before the late answer (the shop was busy: a lookup made meanwhile finds nothing yet) or at once with only
  the answer late. This is how a retried write turns into a duplicate.

Checkout and the admin change orders through ``place_order`` (order, items, customer, addresses), ``mark_paid``,
``ship``, ``cancel`` and ``refund`` (``RefundedAmount``, PaymentStatusId 35/40), with nopCommerce's own status
rules (``CheckOrderStatusAsync``); like a real shop, none of them sends anything anywhere. The poller reads
them back through ``Order/Search``, ``OrderItem/GetOrderItems/{orderId}``, ``Customer/GetById/{id}``,
``Address/GetById/{id}`` and ``Product/GetById/{id}`` (the plugin's ``[controller]/[action]/{id}`` pattern;
``OrderItemController`` read in the plugin source, the Customer and Address actions by the same pattern).

Sandbox-only additions (not in the plugin): the ``/_sandbox/*`` admin routes, ``strict_enums`` (on by
default: unknown ``order_status_id``/``payment_status_id``/``shipping_status_id``/``manage_inventory_method_id``
values get a 400 validation problem, while the real plugin stores any integer), ``ignored_fields``,
``inventory_notes`` (stock written for a product whose stock is not managed per product) and the
``X-Sandbox-Ignored-Filters`` header on ``Order/Search`` for filters it cannot evaluate (no addresses,
items or vendors are modelled).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from switchyard_local.sandboxes import http
from switchyard_local.sandboxes.faults import FaultInjector

DEFAULT_API_EMAIL = "switchyard@shop.example"
DEFAULT_API_PASSWORD = "secret"
# A registered customer whose role lacks AccessWebApiBackend: gets a token, then 403 on every call.
NO_ACCESS_EMAIL = "registered@shop.example"
NO_ACCESS_PASSWORD = "secret"
DEFAULT_TOKEN_LIFETIME_DAYS = 7  # WebApiCommonDefaults.TokenLifeTime

API_PREFIX = "/api-backend/"
INT_MAX = 2**31 - 1  # C# int.MaxValue: the plugin's default pageSize
INT_MIN = -(2**31)
MIN_DATE = "0001-01-01T00:00:00"  # default(DateTime) as Newtonsoft writes it
EMPTY_GUID = "00000000-0000-0000-0000-000000000000"

ORDER_STATUSES = {10: "Pending", 20: "Processing", 30: "Complete", 40: "Cancelled"}
PAYMENT_STATUSES = {10: "Pending", 20: "Authorized", 30: "Paid", 35: "PartiallyRefunded", 40: "Refunded", 50: "Voided"}
SHIPPING_STATUSES = {
    10: "ShippingNotRequired",
    20: "NotYetShipped",
    25: "PartiallyShipped",
    30: "Shipped",
    40: "Delivered",
}
MANAGE_INVENTORY_METHODS = {0: "DontManageStock", 1: "ManageStock", 2: "ManageStockByAttributes"}

NAME_IDENTIFIER_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"
EMAIL_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
PROBLEM_TYPE_400 = "https://tools.ietf.org/html/rfc7231#section-6.5.1"
PROBLEM_TYPE_415 = "https://tools.ietf.org/html/rfc7231#section-6.5.13"
LOGIN_FAILED = "Username or password is incorrect"
_GUID_NAMESPACE = uuid.UUID("6f1c3b0e-4a53-4d55-9a4e-6e6f70636f6d")  # uuid5 namespace for seeded GUIDs
_INT_PATTERN = re.compile(r"^\s*[+-]?\d+\s*$")


# --------------------------------------------------------------------------- naming and DTO specs


def snake_case(name: str) -> str:
    """Newtonsoft's ``SnakeCaseNamingStrategy`` (``StringUtils.ToSnakeCase``): ``OrderSubTotalDiscountInclTax``
    -> ``order_sub_total_discount_incl_tax``, ``CardCvv2`` -> ``card_cvv2``; snake_case input is unchanged."""
    out: list[str] = []
    state = "start"
    for index, char in enumerate(name):
        if char == " ":
            if state != "start":
                state = "new_word"
        elif char.isupper():
            if state == "upper":
                if index > 0 and index + 1 < len(name):
                    following = name[index + 1]
                    if not following.isupper() and following != "_":
                        out.append("_")
            elif state in ("lower", "new_word"):
                out.append("_")
            out.append(char.lower())
            state = "upper"
        elif char == "_":
            out.append("_")
            state = "start"
        else:
            if state == "new_word":
                out.append("_")
            out.append(char)
            state = "lower"
    return "".join(out)


_KIND_DEFAULTS: dict[str, Any] = {
    "int": 0,
    "dec": 0.0,
    "bool": False,
    "str": None,
    "date": MIN_DATE,
    "guid": EMPTY_GUID,
}
_CLR_TYPES = {
    "int": "System.Int32",
    "dec": "System.Decimal",
    "bool": "System.Boolean",
    "str": "System.String",
    "date": "System.DateTime",
    "guid": "System.Guid",
}


@dataclass(frozen=True)
class DtoSpec:
    """A plugin DTO: its wire (snake_case) field names in declaration order and their CLR kinds."""

    name: str
    kinds: dict[str, str]  # wire name -> "int" | "int?" | "dec" | "dec?" | "bool" | "str" | "date" | "date?" | "guid"

    @classmethod
    def parse(cls, name: str, text: str) -> DtoSpec:
        """``text`` lists ``PascalName:kind`` tokens as the C# DTO declares them; ``Id`` comes first."""
        kinds = {"id": "int"}
        for token in text.split():
            pascal, kind = token.split(":")
            kinds[snake_case(pascal)] = kind
        return cls(name, kinds)

    def defaults(self) -> dict[str, Any]:
        """A fresh DTO as C# constructs it: 0, 0.0, false, null, ``default(DateTime)``, ``Guid.Empty``."""
        return {name: None if kind.endswith("?") else _KIND_DEFAULTS[kind] for name, kind in self.kinds.items()}

    def match(self, key: str) -> str | None:
        """The field a JSON property binds to: exact name, else case-insensitive (Newtonsoft's rule)."""
        if key in self.kinds:
            return key
        lowered = key.lower()
        return next((name for name in self.kinds if name.lower() == lowered), None)


ORDER_DTO = DtoSpec.parse(
    "OrderDto",
    """
    OrderGuid:guid StoreId:int CustomerId:int BillingAddressId:int ShippingAddressId:int? PickupAddressId:int?
    PickupInStore:bool OrderStatusId:int ShippingStatusId:int PaymentStatusId:int PaymentMethodSystemName:str
    CustomerCurrencyCode:str CurrencyRate:dec CustomerTaxDisplayTypeId:int VatNumber:str
    OrderSubtotalInclTax:dec OrderSubtotalExclTax:dec OrderSubTotalDiscountInclTax:dec
    OrderSubTotalDiscountExclTax:dec OrderShippingInclTax:dec OrderShippingExclTax:dec
    PaymentMethodAdditionalFeeInclTax:dec PaymentMethodAdditionalFeeExclTax:dec TaxRates:str OrderTax:dec
    OrderDiscount:dec OrderTotal:dec RefundedAmount:dec RewardPointsHistoryEntryId:int?
    CheckoutAttributeDescription:str CheckoutAttributesXml:str CustomerLanguageId:int AffiliateId:int
    CustomerIp:str AllowStoringCreditCardNumber:bool CardType:str CardName:str CardNumber:str
    MaskedCreditCardNumber:str CardCvv2:str CardExpirationMonth:str CardExpirationYear:str
    AuthorizationTransactionId:str AuthorizationTransactionCode:str AuthorizationTransactionResult:str
    CaptureTransactionId:str CaptureTransactionResult:str SubscriptionTransactionId:str PaidDateUtc:date?
    ShippingMethod:str ShippingRateComputationMethodSystemName:str CustomValuesXml:str Deleted:bool
    CreatedOnUtc:date CustomOrderNumber:str RedeemedRewardPointsEntryId:int?
    """,
)

ORDER_NOTE_DTO = DtoSpec.parse(
    "OrderNoteDto", "OrderId:int Note:str DownloadId:int DisplayToCustomer:bool CreatedOnUtc:date"
)

PRODUCT_DTO = DtoSpec.parse(
    "ProductDto",
    """
    ProductTypeId:int ParentGroupedProductId:int VisibleIndividually:bool Name:str ShortDescription:str
    FullDescription:str AdminComment:str ProductTemplateId:int VendorId:int ShowOnHomepage:bool MetaKeywords:str
    MetaDescription:str MetaTitle:str AllowCustomerReviews:bool ApprovedRatingSum:int NotApprovedRatingSum:int
    ApprovedTotalReviews:int NotApprovedTotalReviews:int SubjectToAcl:bool LimitedToStores:bool Sku:str
    ManufacturerPartNumber:str Gtin:str IsGiftCard:bool GiftCardTypeId:int OverriddenGiftCardAmount:dec?
    RequireOtherProducts:bool RequiredProductIds:str AutomaticallyAddRequiredProducts:bool IsDownload:bool
    DownloadId:int UnlimitedDownloads:bool MaxNumberOfDownloads:int DownloadExpirationDays:int?
    DownloadActivationTypeId:int HasSampleDownload:bool SampleDownloadId:int HasUserAgreement:bool
    UserAgreementText:str IsRecurring:bool RecurringCycleLength:int RecurringCyclePeriodId:int
    RecurringTotalCycles:int IsRental:bool RentalPriceLength:int RentalPricePeriodId:int IsShipEnabled:bool
    IsFreeShipping:bool ShipSeparately:bool AdditionalShippingCharge:dec DeliveryDateId:int IsTaxExempt:bool
    TaxCategoryId:int IsTelecommunicationsOrBroadcastingOrElectronicServices:bool ManageInventoryMethodId:int
    ProductAvailabilityRangeId:int UseMultipleWarehouses:bool WarehouseId:int StockQuantity:int
    DisplayStockAvailability:bool DisplayStockQuantity:bool MinStockQuantity:int LowStockActivityId:int
    NotifyAdminForQuantityBelow:int BackorderModeId:int AllowBackInStockSubscriptions:bool
    OrderMinimumQuantity:int OrderMaximumQuantity:int AllowedQuantities:str
    AllowAddingOnlyExistingAttributeCombinations:bool NotReturnable:bool DisableBuyButton:bool
    DisableWishlistButton:bool AvailableForPreOrder:bool PreOrderAvailabilityStartDateTimeUtc:date?
    CallForPrice:bool Price:dec OldPrice:dec ProductCost:dec CustomerEntersPrice:bool
    MinimumCustomerEnteredPrice:dec MaximumCustomerEnteredPrice:dec BasepriceEnabled:bool BasepriceAmount:dec
    BasepriceUnitId:int BasepriceBaseAmount:dec BasepriceBaseUnitId:int MarkAsNew:bool
    MarkAsNewStartDateTimeUtc:date? MarkAsNewEndDateTimeUtc:date? HasTierPrices:bool HasDiscountsApplied:bool
    Weight:dec Length:dec Width:dec Height:dec AvailableStartDateTimeUtc:date? AvailableEndDateTimeUtc:date?
    DisplayOrder:int Published:bool Deleted:bool CreatedOnUtc:date UpdatedOnUtc:date
    """,
)

SHIPMENT_DTO = DtoSpec.parse(
    "ShipmentDto",
    """
    OrderId:int TrackingNumber:str TotalWeight:dec? ShippedDateUtc:date? DeliveryDateUtc:date?
    ReadyForPickupDateUtc:date? AdminComment:str CreatedOnUtc:date
    """,
)

SHIPMENT_ITEM_DTO = DtoSpec.parse("ShipmentItemDto", "ShipmentId:int OrderItemId:int Quantity:int WarehouseId:int")

SPECIFICATION_ATTRIBUTE_DTO = DtoSpec.parse(
    "SpecificationAttributeDto", "Name:str DisplayOrder:int SpecificationAttributeGroupId:int?")
SPECIFICATION_OPTION_DTO = DtoSpec.parse(
    "SpecificationAttributeOptionDto", "SpecificationAttributeId:int Name:str ColorSquaresRgb:str DisplayOrder:int")
PRODUCT_SPECIFICATION_DTO = DtoSpec.parse(
    "ProductSpecificationAttributeDto",
    """
    ProductId:int AttributeTypeId:int SpecificationAttributeOptionId:int CustomValue:str AllowFiltering:bool
    ShowOnProductPage:bool DisplayOrder:int
    """,
)

ORDER_ITEM_DTO = DtoSpec.parse(
    "OrderItemDto",
    """
    OrderItemGuid:guid OrderId:int ProductId:int Quantity:int UnitPriceInclTax:dec UnitPriceExclTax:dec
    PriceInclTax:dec PriceExclTax:dec DiscountAmountInclTax:dec DiscountAmountExclTax:dec OriginalProductCost:dec
    AttributeDescription:str AttributesXml:str DownloadCount:int IsDownloadActivated:bool LicenseDownloadId:int?
    ItemWeight:dec? RentalStartDateUtc:date? RentalEndDateUtc:date?
    """,
)

CUSTOMER_DTO = DtoSpec.parse(
    "CustomerDto",
    """
    CustomerGuid:guid Username:str Email:str EmailToRevalidate:str AdminComment:str IsTaxExempt:bool AffiliateId:int
    VendorId:int HasShoppingCartItems:bool RequireReLogin:bool FailedLoginAttempts:int CannotLoginUntilDateUtc:date?
    Active:bool Deleted:bool IsSystemAccount:bool SystemName:str LastIpAddress:str CreatedOnUtc:date
    LastLoginDateUtc:date? LastActivityDateUtc:date RegisteredInStoreId:int BillingAddressId:int?
    ShippingAddressId:int? FirstName:str LastName:str Gender:str DateOfBirth:date? Company:str StreetAddress:str
    StreetAddress2:str ZipPostalCode:str City:str County:str CountryId:int StateProvinceId:int Phone:str Fax:str
    VatNumber:str VatNumberStatusId:int TimeZoneId:str CustomCustomerAttributesXML:str CurrencyId:int?
    LanguageId:int? TaxDisplayTypeId:int?
    """,
)

CUSTOMER_ATTRIBUTE_DTO = DtoSpec.parse(
    "CustomerAttributeDto", "Name:str IsRequired:bool AttributeControlTypeId:int DisplayOrder:int"
)

CUSTOMER_ATTRIBUTE_VALUE_DTO = DtoSpec.parse(
    "CustomerAttributeValueDto", "CustomerAttributeId:int Name:str IsPreSelected:bool DisplayOrder:int"
)

ADDRESS_DTO = DtoSpec.parse(
    "AddressDto",
    """
    FirstName:str LastName:str Email:str Company:str CountryId:int? StateProvinceId:int? County:str City:str
    Address1:str Address2:str ZipPostalCode:str PhoneNumber:str FaxNumber:str CustomAttributes:str CreatedOnUtc:date
    """,
)

AUTHENTICATE_REQUEST = DtoSpec("AuthenticateAdminRequest", {"username": "str", "email": "str", "password": "str"})

# Sandbox-only strictness (strict_enums): the plugin itself stores any integer in these fields.
_ENUM_FIELDS: dict[str, dict[str, dict[int, str]]] = {
    ORDER_DTO.name: {
        "order_status_id": ORDER_STATUSES,
        "payment_status_id": PAYMENT_STATUSES,
        "shipping_status_id": SHIPPING_STATUSES,
    },
    PRODUCT_DTO.name: {"manage_inventory_method_id": MANAGE_INVENTORY_METHODS},
}

SEED_ORDER_DEFAULTS: dict[str, Any] = {
    "store_id": 1,
    "billing_address_id": 1,
    "order_status_id": 10,  # Pending
    "shipping_status_id": 20,  # NotYetShipped
    "payment_status_id": 10,  # Pending
    "payment_method_system_name": "Payments.CheckMoneyOrder",
    "customer_currency_code": "USD",
    "currency_rate": 1.0,
    "customer_tax_display_type_id": 10,  # ExcludingTax
    "customer_language_id": 1,
    "customer_ip": "127.0.0.1",
    "shipping_method": "Ground",
    "shipping_rate_computation_method_system_name": "Shipping.FixedByWeightByTotal",
}

SEED_PRODUCT_DEFAULTS: dict[str, Any] = {
    "product_type_id": 5,  # SimpleProduct
    "visible_individually": True,
    "product_template_id": 1,
    "allow_customer_reviews": True,
    "is_ship_enabled": True,
    "display_stock_availability": True,
    "order_minimum_quantity": 1,
    "order_maximum_quantity": 10000,
    "published": True,
}


# --------------------------------------------------------------------------- values


def format_datetime(value: datetime) -> str:
    """A UTC instant as Newtonsoft writes a database ``DateTime`` (kind Unspecified): no offset, and
    fractional seconds only when non-zero, e.g. ``2024-05-01T12:00:00`` or ``2024-05-01T12:00:00.25``."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    return text


def parse_datetime(value: str) -> str:
    """Normalise an ISO 8601 date-time (``Z``, an offset or none; none means UTC) to the wire format."""
    parsed = datetime.fromisoformat(value.strip())
    return format_datetime(parsed)


def _epoch_to_wire(seconds: float) -> str:
    return format_datetime(datetime.fromtimestamp(seconds, tz=UTC))


def _wire_to_datetime(value: str) -> datetime:
    return datetime.fromisoformat(value)


class _BindError(ValueError):
    """A JSON value that does not convert to the field's CLR type (a model-binding error in ASP.NET Core)."""


def _coerce(kind: str, value: Any, path: str) -> Any:
    """Convert a JSON value the way Newtonsoft would for the DTO property, or raise ``_BindError``."""
    nullable = kind.endswith("?")
    base = kind.rstrip("?")
    if value is None:
        if nullable or base == "str":
            return None
        raise _BindError(f"Error converting value {{null}} to type '{_CLR_TYPES[base]}'. Path '{path}'.")
    problem = f"Error converting value {json.dumps(value)} to type '{_CLR_TYPES[base]}'. Path '{path}'."
    if base == "int":
        if isinstance(value, bool):
            raise _BindError(problem)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str) and _INT_PATTERN.match(value):
            value = int(value)
        if not isinstance(value, int) or not INT_MIN <= value <= INT_MAX:
            raise _BindError(problem)
        return value
    if base == "dec":
        if isinstance(value, bool):
            raise _BindError(problem)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError as error:
                raise _BindError(problem) from error
        if not isinstance(value, int | float) or value != value or value in (float("inf"), float("-inf")):
            raise _BindError(problem)
        return float(value)
    if base == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise _BindError(problem)
    if base == "str":
        if isinstance(value, bool):
            return "True" if value else "False"
        if isinstance(value, str | int | float):
            return value if isinstance(value, str) else json.dumps(value)
        raise _BindError(problem)
    if base == "date":
        if not isinstance(value, str):
            raise _BindError(problem)
        try:
            return parse_datetime(value)
        except ValueError as error:
            raise _BindError(problem) from error
    if base == "guid":
        if not isinstance(value, str):
            raise _BindError(problem)
        try:
            return str(uuid.UUID(value.strip()))
        except ValueError as error:
            raise _BindError(problem) from error
    raise AssertionError(f"unknown kind {kind!r}")


# --------------------------------------------------------------------------- responses


class _Reply(Exception):
    """Short-circuits a request with a finished response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def _string(status: int, message: str) -> Response:
    """``NotFound("...")`` under ``[Produces("application/json")]``: a JSON string literal."""
    return http.json_response(message, status=status)


def _message(status: int, message: str) -> Response:
    """The plugin's ``JsonResult(new { message = ... })`` (401 Unauthorized, 403 Access denied.)."""
    return http.json_response({"message": message}, status=status)


def _ok_empty() -> Response:
    """``return Ok();``: 200 with no body and no content type."""
    response = Response(b"", status=200)
    del response.headers["Content-Type"]
    return response


def _trace_id() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"


def _problem(status: int, title: str, problem_type: str, errors: Mapping[str, list[str]] | None = None) -> Response:
    body: dict[str, Any] = {"type": problem_type, "title": title, "status": status, "traceId": _trace_id()}
    if errors is not None:
        body["errors"] = {key: list(value) for key, value in errors.items()}
    response = http.json_response(body, status=status)
    response.headers["Content-Type"] = "application/problem+json; charset=utf-8"
    return response


def _bad_request() -> _Reply:
    """``return BadRequest();`` as ``[ApiController]`` maps it: a problem details body."""
    return _Reply(_problem(400, "Bad Request", PROBLEM_TYPE_400))


def _invalid(errors: Mapping[str, list[str]]) -> _Reply:
    """Automatic 400 for a model-binding/validation failure (``ValidationProblemDetails``)."""
    return _Reply(_problem(400, "One or more validation errors occurred.", PROBLEM_TYPE_400, errors))


def _server_error(status: int, message: str, exception_type: str, developer_mode: bool) -> _Reply:
    """An exception caught by the plugin's ``ErrorHandlerMiddleware``."""
    stack = f"{exception_type}: {message}\n   at (sandbox: no stack trace)" if developer_mode else ""
    body = {"message": message, "inner_exception_message": None, "stack_trace": stack}
    return _Reply(http.json_response(body, status=status))


def _admin_error(message: str, status: int = 400) -> Response:
    return http.json_response({"error": message}, status=status)


# --------------------------------------------------------------------------- JWT (HS256)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_jwt(claims: Mapping[str, Any], secret_key: str) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(dict(claims), separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(secret_key.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def decode_jwt(token: str, secret_key: str) -> dict[str, Any] | None:
    """The claims of a well-formed HS256 token signed with ``secret_key``; None otherwise (no time checks)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json.loads(_b64url_decode(parts[0]))
        expected = hmac.new(secret_key.encode(), f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256).digest()
        if not isinstance(header, dict) or header.get("alg") != "HS256":
            return None
        if not hmac.compare_digest(expected, _b64url_decode(parts[2])):
            return None
        claims = json.loads(_b64url_decode(parts[1]))
    except (ValueError, UnicodeError):
        return None
    return claims if isinstance(claims, dict) else None


# --------------------------------------------------------------------------- routing and state

_ROUTES = Map(
    [
        # ASP.NET Core routes ignore case: the sandbox matches the lower-cased path against these.
        Rule("/api-backend/authenticate/gettoken", endpoint="get_token", methods=["POST"]),
        Rule("/api-backend/order/getbyid/<id>", endpoint="order_get_by_id", methods=["GET"]),
        Rule("/api-backend/order/getbyguid", endpoint="order_get_by_guid", methods=["GET"]),
        Rule("/api-backend/order/getbycustomordernumber", endpoint="order_get_by_custom_number", methods=["GET"]),
        Rule("/api-backend/order/search", endpoint="order_search", methods=["GET"]),
        Rule("/api-backend/order/update", endpoint="order_update", methods=["PUT"]),
        Rule("/api-backend/orderitem/getorderitems/<order_id>", endpoint="order_items", methods=["GET"]),
        Rule("/api-backend/customer/getbyid/<id>", endpoint="customer_get_by_id", methods=["GET"]),
        Rule("/api-backend/customer/getcustomerbyemail", endpoint="customer_get_by_email", methods=["GET"]),
        Rule("/api-backend/customer/update", endpoint="customer_update", methods=["PUT"]),
        Rule("/api-backend/customerattribute/getall", endpoint="customer_attributes", methods=["POST"]),
        Rule("/api-backend/customerattributevalue/getall/<attribute_id>", endpoint="customer_attribute_values",
             methods=["GET"]),
        Rule("/api-backend/address/getbyid/<id>", endpoint="address_get_by_id", methods=["GET"]),
        Rule("/api-backend/ordernote/create", endpoint="note_create", methods=["POST"]),
        Rule("/api-backend/ordernote/getbyid/<id>", endpoint="note_get_by_id", methods=["GET"]),
        Rule("/api-backend/ordernote/getordernotesbyorderid/<order_id>", endpoint="notes_by_order", methods=["GET"]),
        Rule("/api-backend/ordernote/delete/<id>", endpoint="note_delete", methods=["DELETE"]),
        Rule("/api-backend/product/getbyid/<id>", endpoint="product_get_by_id", methods=["GET"]),
        Rule("/api-backend/product/getproductbysku", endpoint="product_get_by_sku", methods=["GET"]),
        Rule("/api-backend/product/update", endpoint="product_update", methods=["PUT"]),
        Rule("/api-backend/product/adjustinventory/<product_id>", endpoint="product_adjust", methods=["POST"]),
        Rule("/api-backend/shipment/getbyid/<id>", endpoint="shipment_get_by_id", methods=["GET"]),
        Rule("/api-backend/shipment/getbyorderid/<order_id>", endpoint="shipments_by_order", methods=["GET"]),
        Rule("/api-backend/shipment/create", endpoint="shipment_create", methods=["POST"]),
        Rule("/api-backend/shipment/update", endpoint="shipment_update", methods=["PUT"]),
        Rule("/api-backend/shipmentitem/create", endpoint="shipment_item_create", methods=["POST"]),
        Rule("/api-backend/shipmentitem/getbyshipmentid/<id>", endpoint="shipment_items", methods=["GET"]),
        Rule("/api-backend/specificationattribute/getall", endpoint="spec_attributes", methods=["GET"]),
        Rule("/api-backend/specificationattribute/create", endpoint="spec_attribute_create", methods=["POST"]),
        Rule("/api-backend/specificationattributeoption/getspecificationattributeoptionsbyspecificationattribute/"
             "<attribute_id>", endpoint="spec_options", methods=["GET"]),
        Rule("/api-backend/specificationattributeoption/create", endpoint="spec_option_create", methods=["POST"]),
        Rule("/api-backend/productspecificationattribute/getall", endpoint="product_specs", methods=["GET"]),
        Rule("/api-backend/productspecificationattribute/create", endpoint="product_spec_create", methods=["POST"]),
        Rule("/api-backend/productspecificationattribute/update", endpoint="product_spec_update", methods=["PUT"]),
        Rule("/api-backend/productspecificationattribute/delete/<id>", endpoint="product_spec_delete",
             methods=["DELETE"]),
        Rule("/_sandbox/state", endpoint="admin_state", methods=["GET"]),
        Rule("/_sandbox/reset", endpoint="admin_reset", methods=["POST"]),
        Rule("/_sandbox/faults", endpoint="admin_set_faults", methods=["POST"]),
        Rule("/_sandbox/faults", endpoint="admin_clear_faults", methods=["DELETE"]),
        Rule("/_sandbox/orders", endpoint="admin_seed_order", methods=["POST"]),
        Rule("/_sandbox/products", endpoint="admin_seed_product", methods=["POST"]),
        Rule("/_sandbox/checkout", endpoint="admin_checkout", methods=["POST"]),
        Rule("/_sandbox/orders/<order_id>/<action>", endpoint="admin_order_action", methods=["POST"]),
    ],
    strict_slashes=False,
)


@dataclass
class _Customer:
    id: int
    email: str
    password: str
    web_api_access: bool
    customer_guid: str
    active: bool = True


@dataclass
class _State:
    customers: dict[int, _Customer] = field(default_factory=dict)
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    notes: dict[int, dict[str, Any]] = field(default_factory=dict)
    products: dict[int, dict[str, Any]] = field(default_factory=dict)
    shipments: dict[int, dict[str, Any]] = field(default_factory=dict)
    shipment_items: dict[int, dict[str, Any]] = field(default_factory=dict)
    spec_attributes: dict[int, dict[str, Any]] = field(default_factory=dict)
    spec_options: dict[int, dict[str, Any]] = field(default_factory=dict)
    product_specs: dict[int, dict[str, Any]] = field(default_factory=dict)
    note_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    inventory_notes: list[dict[str, Any]] = field(default_factory=list)
    ignored_fields: list[dict[str, Any]] = field(default_factory=list)
    ignored_filters: list[dict[str, Any]] = field(default_factory=list)
    order_items: dict[int, dict[str, Any]] = field(default_factory=dict)
    shoppers: dict[int, dict[str, Any]] = field(default_factory=dict)  # Customer DTOs of checkout customers
    addresses: dict[int, dict[str, Any]] = field(default_factory=dict)
    customer_attributes: dict[int, dict[str, Any]] = field(default_factory=dict)
    customer_attribute_values: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class SlowRequest:
    """One request the shop answers only after ``seconds`` (queued by ``NopCommerceSandbox.slow_next``).

    ``carry_out="late"``: the shop is busy first (a lock, a slow database) and carries the request out just
    before it answers, so a client that gave up and looks again early finds nothing yet. ``"early"``: it is
    carried out at once and only the answer is late (the connection or a proxy is slow)."""

    seconds: float
    path: str  # a lower-cased part of the path the request must contain, e.g. "ordernote/create"
    carry_out: Literal["late", "early"] = "late"


def _next_id(entities: Mapping[int, Any]) -> int:
    return max(entities, default=0) + 1


def _is_json_mimetype(mimetype: str) -> bool:
    return mimetype in ("application/json", "text/json") or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


# --------------------------------------------------------------------------- the sandbox


class NopCommerceSandbox(http.SandboxApp):
    """In-memory nopCommerce + Web API Backend plugin: a WSGI app (``wsgi_app``) that can also serve itself."""

    def __init__(
        self,
        api_email: str = DEFAULT_API_EMAIL,
        api_password: str = DEFAULT_API_PASSWORD,
        *,
        token_lifetime_days: int = DEFAULT_TOKEN_LIFETIME_DAYS,
        developer_mode: bool = False,
        secret_key: str | None = None,
        strict_enums: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if token_lifetime_days < 0:
            raise ValueError("token_lifetime_days must not be negative")
        self.api_email = api_email
        self.api_password = api_password
        self.token_lifetime_days = token_lifetime_days
        # DeveloperMode lets every request through without a JWT: never enable it on a production shop.
        self.developer_mode = developer_mode
        self.strict_enums = strict_enums
        self.clock = clock
        self.secret_key = secret_key or secrets.token_urlsafe(24)
        self.requests = http.RequestLog()
        self.faults = FaultInjector(error_body=lambda message: message)  # plain string bodies, like the plugin
        self._slow: list[SlowRequest] = []
        self._slow_lock = threading.Lock()
        self.base_url: str | None = None
        self._lock = threading.RLock()
        self._state = self._fresh_state()
        self._stop: Callable[[], None] | None = None

    # ----------------------------------------------------------------- state and inspection

    def _fresh_state(self) -> _State:
        state = _State()
        for customer_id, (email, password, access) in enumerate(
            ((self.api_email, self.api_password, True), (NO_ACCESS_EMAIL, NO_ACCESS_PASSWORD, False)), start=1
        ):
            guid = str(uuid.uuid5(_GUID_NAMESPACE, f"customer:{email.lower()}"))
            state.customers[customer_id] = _Customer(customer_id, email, password, access, guid)
        return state

    def reset(self) -> None:
        """Forget orders, notes, products, extra customers, recorded requests and faults.

        The signing key is kept (as on a real shop), so tokens issued before stay valid; call
        ``rotate_secret_key()`` to invalidate them.
        """
        with self._lock:
            self._state = self._fresh_state()
        with self._slow_lock:
            self._slow.clear()
        self.requests.clear()
        self.faults.clear()

    def slow_next(self, n: int, seconds: float, *, path: str = "ordernote/create",
                  carry_out: Literal["late", "early"] = "late") -> None:
        """Answer the next ``n`` API requests whose path contains ``path`` only after ``seconds`` (longer than
        the client's timeout: the client gives up while the shop still works on it). See ``SlowRequest``."""
        if n < 0 or seconds < 0:
            raise ValueError("n and seconds must not be negative")
        with self._slow_lock:
            self._slow.extend(SlowRequest(seconds, path.lower(), carry_out) for _ in range(n))

    def _take_slow(self, lowered_path: str) -> SlowRequest | None:
        with self._slow_lock:
            for index, slow in enumerate(self._slow):
                if slow.path in lowered_path:
                    return self._slow.pop(index)
        return None

    def rotate_secret_key(self, secret_key: str | None = None) -> None:
        """The admin presses "Generate new" for the secret key: every issued token stops working."""
        with self._lock:
            self.secret_key = secret_key or secrets.token_urlsafe(24)

    def snapshot(self) -> dict[str, Any]:
        """Everything a test or the demo wants to assert on, as JSON-ready data."""
        with self._lock:
            state = self._state
            return {
                "settings": {
                    "developer_mode": self.developer_mode,
                    "token_lifetime_days": self.token_lifetime_days,
                    "strict_enums": self.strict_enums,
                },
                "customers": [
                    {"id": c.id, "email": c.email, "web_api_access": c.web_api_access, "active": c.active}
                    for c in state.customers.values()
                ],
                "orders": [self._order_summary(order) for order in state.orders.values()],
                "order_notes": copy.deepcopy(sorted(state.notes.values(), key=lambda note: note["id"])),
                "products": [_product_summary(product) for product in state.products.values()],
                "inventory_notes": copy.deepcopy(state.inventory_notes),
                "ignored_fields": copy.deepcopy(state.ignored_fields),
                "ignored_filters": copy.deepcopy(state.ignored_filters),
                "faults": self.faults.plan.to_dict(),
            }

    def _order_summary(self, order: Mapping[str, Any]) -> dict[str, Any]:
        notes = sorted((n for n in self._state.notes.values() if n["order_id"] == order["id"]), key=lambda n: n["id"])
        return {
            "id": order["id"],
            "order_guid": order["order_guid"],
            "custom_order_number": order["custom_order_number"],
            "customer_id": order["customer_id"],
            "order_status_id": order["order_status_id"],
            "order_status": ORDER_STATUSES.get(order["order_status_id"]),
            "payment_status_id": order["payment_status_id"],
            "payment_status": PAYMENT_STATUSES.get(order["payment_status_id"]),
            "shipping_status_id": order["shipping_status_id"],
            "shipping_status": SHIPPING_STATUSES.get(order["shipping_status_id"]),
            "order_total": order["order_total"],
            "customer_currency_code": order["customer_currency_code"],
            "currency_rate": order["currency_rate"],
            "created_on_utc": order["created_on_utc"],
            "deleted": order["deleted"],
            "notes": [note["note"] for note in notes],
        }

    @property
    def inventory_notes(self) -> list[dict[str, Any]]:
        """Stock written for a product whose stock is not managed per product (sandbox-only record)."""
        with self._lock:
            return copy.deepcopy(self._state.inventory_notes)

    @property
    def ignored_fields(self) -> list[dict[str, Any]]:
        """JSON properties the plugin would silently ignore (e.g. PascalCase names), per request."""
        with self._lock:
            return copy.deepcopy(self._state.ignored_fields)

    # ----------------------------------------------------------------- Python seeding and lookup API

    def seed_order(self, order: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """A shopper's placed order. Keys may be nopCommerce (``OrderTotal``) or wire (``order_total``) names.

        Defaults: the next ``id``, a ``order_guid`` derived from the id, ``custom_order_number=str(id)``,
        ``created_on_utc`` = now, status Pending / payment Pending / NotYetShipped, USD at rate 1, store 1.
        Raises ``ValueError`` for unknown keys, bad values or a duplicate id.
        """
        with self._lock:
            given = _seed_values(ORDER_DTO, {**(order or {}), **fields})
            if self.strict_enums:
                self._check_enum_values(ORDER_DTO, given, error=ValueError)
            order_id = given.get("id") or _next_id(self._state.orders)
            if order_id in self._state.orders:
                raise ValueError(f"order id {order_id} already exists")
            values = {**ORDER_DTO.defaults(), **SEED_ORDER_DEFAULTS, **given, "id": order_id}
            if values["order_guid"] == EMPTY_GUID:
                values["order_guid"] = str(uuid.uuid5(_GUID_NAMESPACE, f"order:{order_id}"))
            if values["custom_order_number"] is None:
                values["custom_order_number"] = str(order_id)
            if "created_on_utc" not in given:
                values["created_on_utc"] = _epoch_to_wire(self.clock())
            self._state.orders[order_id] = values
            return copy.deepcopy(values)

    def update_order(self, order_id: int, **fields: Any) -> dict[str, Any]:
        """An admin changes an order in the shop (``OrderStatusId=40``: cancelled); names as for ``seed_order``."""
        with self._lock:
            if order_id not in self._state.orders:
                raise KeyError(f"no order {order_id}")
            given = _seed_values(ORDER_DTO, fields)
            if self.strict_enums:
                self._check_enum_values(ORDER_DTO, given, error=ValueError)
            self._state.orders[order_id].update(given)
            return copy.deepcopy(self._state.orders[order_id])

    def seed_product(
        self, name: str, sku: str, stock: int, manage: int = 1, price: float = 0.0, **fields: Any
    ) -> dict[str, Any]:
        """A catalogue product (simple, published); ``manage`` is ``manage_inventory_method_id`` (0, 1, 2)."""
        with self._lock:
            raw = {
                "name": name,
                "sku": sku,
                "stock_quantity": stock,
                "manage_inventory_method_id": manage,
                "price": price,
                **fields,
            }
            given = _seed_values(PRODUCT_DTO, raw)
            if self.strict_enums:
                self._check_enum_values(PRODUCT_DTO, given, error=ValueError)
            product_id = given.get("id") or _next_id(self._state.products)
            if product_id in self._state.products:
                raise ValueError(f"product id {product_id} already exists")
            now = _epoch_to_wire(self.clock())
            values = {
                **PRODUCT_DTO.defaults(),
                **SEED_PRODUCT_DEFAULTS,
                "created_on_utc": now,
                "updated_on_utc": now,
                **given,
                "id": product_id,
            }
            self._state.products[product_id] = values
            return copy.deepcopy(values)

    def add_customer(self, email: str, password: str, *, web_api_access: bool = True, active: bool = True) -> int:
        """Register another customer (``web_api_access``: their role has ``AccessWebApiBackend``); returns the id."""
        with self._lock:
            customer_id = _next_id(self._state.customers)
            guid = str(uuid.uuid5(_GUID_NAMESPACE, f"customer:{email.lower()}"))
            self._state.customers[customer_id] = _Customer(customer_id, email, password, web_api_access, guid, active)
            return customer_id

    def seed_customer(self, email: str, **fields: Any) -> dict[str, Any]:
        """A registered shopper (``fields`` in nopCommerce or wire names, e.g. ``FirstName``, ``Phone``,
        ``CustomCustomerAttributesXML``); returns the stored Customer DTO."""
        with self._lock:
            customer_id = max([*self._state.customers, *self._state.shoppers, 0]) + 1
            now = _epoch_to_wire(self.clock())
            shopper = {**CUSTOMER_DTO.defaults(), "username": email, **_seed_values(CUSTOMER_DTO, fields),
                       "id": customer_id, "email": email, "active": True, "registered_in_store_id": 1,
                       "created_on_utc": now, "last_activity_date_utc": now,
                       "customer_guid": str(uuid.uuid5(_GUID_NAMESPACE, f"shopper:{customer_id}"))}
            self._state.shoppers[customer_id] = shopper
            return copy.deepcopy(shopper)

    def seed_customer_attribute(self, name: str, control_type: int = 4, values: tuple[str, ...] = (),
                                **fields: Any) -> dict[str, Any]:
        """A custom customer attribute (Customers > Customer settings > Customer form fields); ``control_type``
        is its ``AttributeControlTypeId`` (4 TextBox, 10 MultilineTextbox, 1 DropdownList, 2 RadioList, ...) and
        ``values`` the names of its predefined values (each gets its own id, as CustomerAttributeValue rows)."""
        with self._lock:
            attribute_id = _next_id(self._state.customer_attributes)
            attribute = {**CUSTOMER_ATTRIBUTE_DTO.defaults(), **_seed_values(CUSTOMER_ATTRIBUTE_DTO, fields),
                         "id": attribute_id, "name": name, "attribute_control_type_id": control_type}
            self._state.customer_attributes[attribute_id] = attribute
            for order, value in enumerate(values):
                value_id = _next_id(self._state.customer_attribute_values)
                self._state.customer_attribute_values[value_id] = {
                    **CUSTOMER_ATTRIBUTE_VALUE_DTO.defaults(), "id": value_id, "customer_attribute_id": attribute_id,
                    "name": value, "display_order": order}
            return copy.deepcopy(attribute)

    def snapshot_customer_attributes(self) -> list[dict[str, Any]]:
        """The shop's custom customer attributes (sandbox inspection)."""
        with self._lock:
            return copy.deepcopy(list(self._state.customer_attributes.values()))

    def customer(self, customer_id: int) -> dict[str, Any]:
        """The stored Customer DTO of a shopper (wire names); ``KeyError`` if unknown."""
        with self._lock:
            return copy.deepcopy(self._state.shoppers[customer_id])

    def issue_token(self, email: str | None = None) -> str:
        """A token as ``GetToken`` would issue it for ``email`` (default: the API customer), without a request."""
        with self._lock:
            customer = self._customer_by_email(email or self.api_email)
            if customer is None:
                raise KeyError(email)
            return self._new_token(customer)

    def order(self, order_id: int) -> dict[str, Any]:
        """The stored order DTO (wire names); ``KeyError`` if unknown."""
        with self._lock:
            return copy.deepcopy(self._state.orders[order_id])

    def product(self, product_id: int) -> dict[str, Any]:
        """The stored product DTO (wire names); ``KeyError`` if unknown."""
        with self._lock:
            return copy.deepcopy(self._state.products[product_id])

    def product_by_sku(self, sku: str) -> dict[str, Any]:
        """The non-deleted product with this SKU (case-insensitive, trimmed); ``KeyError`` if none."""
        with self._lock:
            product = self._find_product_by_sku(sku)
            if product is None:
                raise KeyError(sku)
            return copy.deepcopy(product)

    def shipments(self, order_id: int) -> list[dict[str, Any]]:
        """The order's shipments, each with its ``items`` (sandbox inspection)."""
        with self._lock:
            found = sorted((s for s in self._state.shipments.values() if s["order_id"] == order_id),
                           key=lambda s: s["id"])
            return [{**copy.deepcopy(s), "items": [copy.deepcopy(i) for i in self._state.shipment_items.values()
                                                   if i["shipment_id"] == s["id"]]} for s in found]

    # ----------------------------------------------------------------- checkout and admin (no webhook)

    def place_order(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """A shopper checks out: the order, its items, the customer and the addresses are stored as checkout
        stores them. ``data`` has the shape of an ``order.placed`` webhook's data (``Order``, ``OrderItems``
        with their ``Product``, ``Customer``, ``BillingAddress``, optional ``ShippingAddress``; nopCommerce
        names), so a test can compare what the poller reads back with what was placed. Nothing is sent
        anywhere: nopCommerce has no webhooks. Returns the stored order DTO."""
        with self._lock:
            now = _epoch_to_wire(self.clock())
            customer = dict(data.get("Customer") or {})
            customer_id = int(customer.pop("Id", 0) or 0) or max(
                [*self._state.customers, *self._state.shoppers, 0]) + 1
            if customer_id not in self._state.shoppers and customer_id not in self._state.customers:
                shopper = {**CUSTOMER_DTO.defaults(), **_seed_values(CUSTOMER_DTO, customer),
                           "id": customer_id, "active": True, "registered_in_store_id": 1,
                           "created_on_utc": now, "last_activity_date_utc": now}
                if shopper["customer_guid"] == EMPTY_GUID:
                    shopper["customer_guid"] = str(uuid.uuid5(_GUID_NAMESPACE, f"shopper:{customer_id}"))
                self._state.shoppers[customer_id] = shopper
            address_ids = {}
            for name in ("BillingAddress", "ShippingAddress"):
                if data.get(name) is not None:
                    address_id = _next_id(self._state.addresses)
                    # the webhook contract joins rows the table does not hold (the StateProvince, ISO codes)
                    stored = {k: v for k, v in data[name].items() if snake_case(k) in ADDRESS_DTO.kinds}
                    self._state.addresses[address_id] = {**ADDRESS_DTO.defaults(),
                                                         **_seed_values(ADDRESS_DTO, stored),
                                                         "id": address_id, "created_on_utc": now}
                    address_ids[name] = address_id
            order_fields = _with_excl_tax({key: value for key, value in dict(data["Order"]).items()
                                           if key != "CustomerId"}, _ORDER_TAX_PAIRS)
            order = self.seed_order(order_fields, customer_id=customer_id,
                                    billing_address_id=address_ids.get("BillingAddress", 0),
                                    shipping_address_id=address_ids.get("ShippingAddress"))
            for raw_item in data.get("OrderItems") or ():
                item = _with_excl_tax(dict(raw_item), _ITEM_TAX_PAIRS)
                product = dict(item.pop("Product", None) or {})
                product_id = int(item.get("ProductId") or product.get("Id") or 0)
                if product_id not in self._state.products:
                    extra = {"id": product_id} if product_id else {}
                    product_id = self.seed_product(name=str(product.get("Name") or f"Product {product_id}"),
                                                   sku=str(product.get("Sku") or ""), stock=100, **extra)["id"]
                values = {**ORDER_ITEM_DTO.defaults(), **_seed_values(ORDER_ITEM_DTO, item),
                          "order_id": order["id"], "product_id": product_id}
                if not values["id"] or values["id"] in self._state.order_items:
                    values["id"] = _next_id(self._state.order_items)  # an identity column: the shop numbers it
                if values["order_item_guid"] == EMPTY_GUID:
                    values["order_item_guid"] = str(uuid.uuid5(_GUID_NAMESPACE, f"order-item:{values['id']}"))
                self._state.order_items[values["id"]] = values
            return copy.deepcopy(self._state.orders[order["id"]])

    def mark_paid(self, order_id: int) -> dict[str, Any]:
        """The admin's "Mark as paid" (``MarkOrderAsPaidAsync``): Paid, ``PaidDateUtc`` now, then the order
        status as ``CheckOrderStatusAsync`` derives it."""
        with self._lock:
            order = self._state.orders[order_id]
            order.update(payment_status_id=30, paid_date_utc=_epoch_to_wire(self.clock()))
            self._check_order_status(order)
            return copy.deepcopy(order)

    def ship(self, order_id: int, *, delivered: bool = False) -> dict[str, Any]:
        """A shipment of every item is sent (``ShipmentSentEvent``), or delivered; the order status follows."""
        with self._lock:
            order = self._state.orders[order_id]
            order["shipping_status_id"] = 40 if delivered else 30
            self._check_order_status(order)
            return copy.deepcopy(order)

    def cancel(self, order_id: int) -> dict[str, Any]:
        """The admin cancels the order (``CancelOrderAsync``): Cancelled; an authorized payment is voided."""
        with self._lock:
            order = self._state.orders[order_id]
            order["order_status_id"] = 40
            if order["payment_status_id"] == 20:
                order["payment_status_id"] = 50
            return copy.deepcopy(order)

    def refund(self, order_id: int, amount: float | None = None) -> dict[str, Any]:
        """An offline refund (``RefundOfflineAsync`` / ``PartiallyRefundOfflineAsync``): ``RefundedAmount`` grows;
        PartiallyRefunded (35) until it reaches ``OrderTotal``, then Refunded (40). ``amount`` None: the rest."""
        with self._lock:
            order = self._state.orders[order_id]
            if order["payment_status_id"] not in (30, 35):
                raise ValueError(f"order {order_id} is not paid (payment status {order['payment_status_id']})")
            rest = round(order["order_total"] - order["refunded_amount"], 4)
            amount = rest if amount is None else amount
            if not 0 < amount <= rest:
                raise ValueError(f"a refund of {amount} does not fit the {rest} still refundable")
            order["refunded_amount"] = round(order["refunded_amount"] + amount, 4)
            order["payment_status_id"] = 40 if order["refunded_amount"] >= order["order_total"] else 35
            return copy.deepcopy(order)

    @staticmethod
    def _check_order_status(order: dict[str, Any]) -> None:
        """``OrderProcessingService.CheckOrderStatusAsync`` with ``CompleteOrderWhenDelivered`` on (the default):
        Pending becomes Processing once paid/authorized or shipped; Complete once paid and delivered (or
        paid and needing no shipping). Cancelled and Complete orders are left alone."""
        if order["order_status_id"] in (30, 40):
            return
        if order["order_status_id"] == 10 and (order["payment_status_id"] in (20, 30)
                                               or order["shipping_status_id"] in (25, 30, 40)):
            order["order_status_id"] = 20
        if order["payment_status_id"] == 30 and order["shipping_status_id"] in (10, 40):
            order["order_status_id"] = 30

    def notes(self, order_id: int) -> list[dict[str, Any]]:
        """The order's notes in insertion order (empty if none)."""
        with self._lock:
            return copy.deepcopy(self._notes_of(order_id))

    # ----------------------------------------------------------------- WSGI plumbing

    def _handle(self, request: Request) -> Response:
        path = request.path
        lowered = path.lower()
        slow = None
        if lowered.startswith(API_PREFIX):
            fault = self.faults.apply(request)
            if fault is not None:
                return fault
            slow = self._take_slow(lowered)
        if slow is not None and slow.carry_out == "late":
            time.sleep(slow.seconds)  # outside the lock: other requests (a retry's lookup) go on meanwhile
        response = self._route(request, lowered)
        if slow is not None and slow.carry_out == "early":
            time.sleep(slow.seconds)
        return response

    def _route(self, request: Request, lowered: str) -> Response:
        try:
            endpoint, values = _ROUTES.bind("nopcommerce").match(lowered, request.method)
        except MethodNotAllowed as error:
            response = Response(b"", status=405)
            del response.headers["Content-Type"]
            response.headers["Allow"] = ", ".join(sorted(error.valid_methods or ()))
            return response
        except HTTPException:
            response = Response(b"", status=404)
            del response.headers["Content-Type"]
            return response
        try:
            with self._lock:
                if not endpoint.startswith("admin_") and endpoint != "get_token":
                    self._authorize(request)
                return getattr(self, f"_ep_{endpoint}")(request, **values)
        except _Reply as reply:
            return reply.response

    def _authorize(self, request: Request) -> None:
        """The plugin's ``[Authorize]`` then ``[CheckAccessWebApi]`` filters (both skipped in developer mode)."""
        if self.developer_mode:
            return
        customer = self._customer_from_token(request)
        if customer is None:
            raise _Reply(_message(401, "Unauthorized"))
        if not customer.web_api_access:
            raise _Reply(_message(403, "Access denied."))

    def _customer_from_token(self, request: Request) -> _Customer | None:
        header = request.headers.get("Authorization")
        if header is None:
            return None
        token = header.split(" ")[-1]  # JwtMiddleware: Split(" ").Last(); the scheme word is not checked
        claims = decode_jwt(token, self.secret_key)
        if claims is None:
            return None
        now = self.clock()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, int | float) or now > exp:  # ClockSkew = TimeSpan.Zero
            return None
        if isinstance(nbf, int | float) and nbf > now:
            return None
        try:
            customer_id = int(claims.get("CustomerId", ""))
        except ValueError:
            return None
        return self._state.customers.get(customer_id)

    def _new_token(self, customer: _Customer) -> str:
        now = int(self.clock())
        claims = {
            "nbf": now,
            "exp": now + self.token_lifetime_days * 86400,
            "CustomerId": str(customer.id),
            NAME_IDENTIFIER_CLAIM: customer.customer_guid,
            EMAIL_CLAIM: customer.email,
        }
        return encode_jwt(claims, self.secret_key)

    # ----------------------------------------------------------------- request parsing

    @staticmethod
    def _query(request: Request, name: str) -> str | None:
        """A query parameter by case-insensitive name (ASP.NET Core binding), first value wins."""
        lowered = name.lower()
        return next((value for key, value in request.args.items(multi=True) if key.lower() == lowered), None)

    def _int_query(self, request: Request, name: str, default: int) -> int:
        raw = self._query(request, name)
        if raw is None or raw == "":
            return default
        return _parse_int(raw, name)

    def _bool_query(self, request: Request, name: str) -> bool | None:
        raw = self._query(request, name)
        if raw is None or raw == "":
            return None
        if raw.strip().lower() not in ("true", "false"):
            raise _invalid({name: [f"The value '{raw}' is not valid."]})
        return raw.strip().lower() == "true"

    def _date_query(self, request: Request, name: str) -> datetime | None:
        raw = self._query(request, name)
        if raw is None or raw == "":
            return None
        try:
            return _wire_to_datetime(parse_datetime(raw))
        except ValueError as error:
            raise _invalid({name: [f"The value '{raw}' is not valid."]}) from error

    def _required_query(self, request: Request, name: str) -> str:
        raw = self._query(request, name)
        if raw is None or raw == "":
            raise _invalid({name: [f"The {name} field is required."]})
        return raw

    @staticmethod
    def _json_body(request: Request, *, optional: bool = False) -> Any:
        """The ``[FromBody]`` JSON value: 415 for a non-JSON content type, 400 for an empty or broken body."""
        raw = request.get_data(cache=True)
        if optional and not raw.strip():
            return None
        if not _is_json_mimetype(request.mimetype):
            raise _Reply(_problem(415, "Unsupported Media Type", PROBLEM_TYPE_415))
        if not raw.strip():
            raise _invalid({"": ["A non-empty request body is required."]})
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise _invalid({"": [f"Unexpected character encountered while parsing value: {error}."]}) from error

    def _bind(self, spec: DtoSpec, request: Request) -> dict[str, Any]:
        """Deserialize a ``[FromBody]`` DTO: a fresh DTO with the recognised properties set (others ignored)."""
        body = self._json_body(request)
        if not isinstance(body, dict):
            raise _invalid(
                {
                    "": [
                        f"Cannot deserialize the current JSON value into type '{spec.name}' because the "
                        'type requires a JSON object (e.g. {"name":"value"}) to deserialize correctly.'
                    ]
                }
            )
        values = spec.defaults()
        errors: dict[str, list[str]] = {}
        ignored: list[str] = []
        for key, raw in body.items():
            name = spec.match(key)
            if name is None:
                ignored.append(key)
                continue
            try:
                values[name] = _coerce(spec.kinds[name], raw, key)
            except _BindError as error:
                errors.setdefault(key, []).append(str(error))
        if errors:
            raise _invalid(errors)
        if ignored:
            self._state.ignored_fields.append(
                {"method": request.method, "path": request.path, "dto": spec.name, "fields": ignored}
            )
        if self.strict_enums:
            self._check_enum_values(spec, values, error=None)
        return values

    @staticmethod
    def _check_enum_values(spec: DtoSpec, values: Mapping[str, Any], error: type[Exception] | None) -> None:
        """Sandbox-only: unknown status / inventory-method ids are rejected (400, or ``error`` when seeding)."""
        problems: dict[str, list[str]] = {}
        for name, allowed in _ENUM_FIELDS.get(spec.name, {}).items():
            if name in values and values[name] not in allowed:
                known = ", ".join(str(key) for key in allowed)
                hint = " (a field left out of the body binds to 0)" if values[name] == 0 else ""
                problems[name] = [
                    f"{values[name]} is not a valid value{hint}; known: {known}. Sandbox check: the "
                    "plugin itself stores any integer"
                ]
        if problems:
            if error is not None:
                raise error("; ".join(f"{name}: {text[0]}" for name, text in problems.items()))
            raise _invalid(problems)

    # ----------------------------------------------------------------- lookups

    def _customer_by_email(self, email: str) -> _Customer | None:
        lowered = email.strip().lower()
        return next((c for c in self._state.customers.values() if c.email.lower() == lowered), None)

    def _find_product_by_sku(self, sku: str) -> dict[str, Any] | None:
        wanted = sku.strip().lower()
        matches = (p for p in self._state.products.values() if not p["deleted"] and (p["sku"] or "").lower() == wanted)
        return min(matches, key=lambda product: product["id"], default=None)

    def _notes_of(self, order_id: int, display_to_customer: bool | None = None) -> list[dict[str, Any]]:
        notes = [n for n in self._state.notes.values() if n["order_id"] == order_id]
        if display_to_customer is not None:
            notes = [n for n in notes if n["display_to_customer"] == display_to_customer]
        return sorted(notes, key=lambda note: note["id"])

    def _record_inventory(self, product: Mapping[str, Any], via: str, quantity: int | None) -> None:
        method = product["manage_inventory_method_id"]
        if method == 1:
            return
        reason = (
            "stock is not managed for this product (manage_inventory_method_id=0): "
            "the storefront ignores stock_quantity"
            if method == 0
            else f"stock is tracked per attribute combination (manage_inventory_method_id={method}), not per product"
        )
        self._state.inventory_notes.append(
            {
                "product_id": product["id"],
                "sku": product["sku"],
                "via": via,
                "stock_quantity": product["stock_quantity"],
                "quantity_to_change": quantity,
                "manage_inventory_method_id": method,
                "note": reason,
            }
        )

    # ----------------------------------------------------------------- Authenticate

    def _ep_get_token(self, request: Request) -> Response:
        body = self._json_body(request)
        if not isinstance(body, dict):
            raise _invalid({"": ["Cannot deserialize the current JSON value into type 'AuthenticateAdminRequest'."]})
        credentials = {AUTHENTICATE_REQUEST.match(key): value for key, value in body.items()}
        email, password = credentials.get("email"), credentials.get("password")  # UsernamesEnabled = false
        customer = self._customer_by_email(email) if isinstance(email, str) else None
        if (
            customer is None
            or not customer.active
            or not isinstance(password, str)
            or not hmac.compare_digest(password.encode(), customer.password.encode())
        ):
            raise _server_error(400, LOGIN_FAILED, "Nop.Core.NopException", self.developer_mode)
        token = self._new_token(customer)
        return http.json_response({"username": customer.email, "customer_id": customer.id, "token": token})

    # ----------------------------------------------------------------- Order

    def _order_or_404(self, order_id: int, message: str) -> dict[str, Any]:
        order = self._state.orders.get(order_id)
        if order is None:
            raise _Reply(_string(404, message))
        return order

    def _ep_order_get_by_id(self, request: Request, id: str) -> Response:
        order_id = _parse_int(id, "id")
        if order_id <= 0:
            raise _bad_request()
        return http.json_response(copy.deepcopy(self._order_or_404(order_id, f"Order Id={order_id} not found")))

    def _ep_order_get_by_guid(self, request: Request) -> Response:
        raw = self._required_query(request, "guid")
        try:
            guid = str(uuid.UUID(raw.strip()))
        except ValueError as error:
            raise _invalid({"guid": [f"The value '{raw}' is not valid."]}) from error
        match = next((o for o in self._state.orders.values() if o["order_guid"] == guid and guid != EMPTY_GUID), None)
        if match is None:
            raise _Reply(_string(404, "Order is not found"))
        return http.json_response(copy.deepcopy(match))

    def _ep_order_get_by_custom_number(self, request: Request) -> Response:
        number = self._required_query(request, "customOrderNumber").lower()
        matches = [o for o in self._state.orders.values() if (o["custom_order_number"] or "").lower() == number]
        if not matches:
            raise _Reply(_string(404, "Order is not found"))
        return http.json_response(copy.deepcopy(min(matches, key=lambda order: order["id"])))

    def _ep_order_search(self, request: Request) -> Response:
        store_id = self._int_query(request, "storeId", 0)
        customer_id = self._int_query(request, "customerId", 0)
        affiliate_id = self._int_query(request, "affiliateId", 0)
        payment_method = self._query(request, "paymentMethodSystemName") or None
        created_from = self._date_query(request, "createdFromUtc")
        created_to = self._date_query(request, "createdToUtc")
        status_ids = [_id_array(self._query(request, name)) for name in ("osIds", "psIds", "ssIds")]
        notes_text = self._query(request, "orderNotes") or None
        page_index = self._int_query(request, "pageIndex", 0)
        page_size = self._int_query(request, "pageSize", INT_MAX)
        only_count = bool(self._bool_query(request, "getOnlyTotalCount"))
        unsupported = [
            name
            for name, default in (("vendorId", 0), ("productId", 0), ("warehouseId", 0), ("billingCountryId", 0))
            if self._int_query(request, name, default) != default
        ] + [name for name in ("billingPhone", "billingEmail", "billingLastName") if self._query(request, name)]

        def keep(order: Mapping[str, Any]) -> bool:
            created = _wire_to_datetime(order["created_on_utc"])
            return (
                not order["deleted"]
                and (not store_id or order["store_id"] == store_id)
                and (not customer_id or order["customer_id"] == customer_id)
                and (not affiliate_id or order["affiliate_id"] == affiliate_id)
                and (payment_method is None or order["payment_method_system_name"] == payment_method)
                and (created_from is None or created >= created_from)
                and (created_to is None or created <= created_to)
                and all(
                    not ids or order[name] in ids
                    for ids, name in zip(
                        status_ids, ("order_status_id", "payment_status_id", "shipping_status_id"), strict=True
                    )
                )
                and (notes_text is None or any(notes_text in (n["note"] or "") for n in self._notes_of(order["id"])))
            )

        found = sorted(
            (o for o in self._state.orders.values() if keep(o)),
            key=lambda o: (_wire_to_datetime(o["created_on_utc"]), o["id"]),
            reverse=True,  # SearchOrdersAsync: OrderByDescending(o => o.CreatedOnUtc)
        )
        page = _paged(found, page_index, page_size, only_count)
        response = http.json_response(page)
        if unsupported:
            self._state.ignored_filters.append({"path": request.path, "filters": unsupported})
            response.headers["X-Sandbox-Ignored-Filters"] = ",".join(unsupported)
        return response

    def _ep_order_update(self, request: Request) -> Response:
        values = self._bind(ORDER_DTO, request)
        self._order_or_404(values["id"], "Order is not found")
        self._state.orders[values["id"]] = values  # FromDto: the whole entity is replaced
        return _ok_empty()

    # ----------------------------------------------------------------- OrderNote

    def _ep_note_create(self, request: Request) -> Response:
        values = self._bind(ORDER_NOTE_DTO, request)
        if values["order_id"] not in self._state.orders:
            # The insert hits the FK_OrderNote_OrderId_Order_Id constraint; ErrorHandlerMiddleware answers 500.
            message = (
                'The INSERT statement conflicted with the FOREIGN KEY constraint "FK_OrderNote_OrderId_Order_Id". '
                "The conflict occurred in table \"dbo.Order\", column 'Id'. The statement has been terminated."
            )
            raise _server_error(500, message, "Microsoft.Data.SqlClient.SqlException", self.developer_mode)
        values["id"] = next(self._state.note_ids)  # identity column: a sent id is ignored
        self._state.notes[values["id"]] = values
        return http.json_response(copy.deepcopy(values))

    def _ep_note_get_by_id(self, request: Request, id: str) -> Response:
        note_id = _parse_int(id, "id")
        if note_id <= 0:
            raise _bad_request()
        note = self._state.notes.get(note_id)
        if note is None:
            raise _Reply(_string(404, f"Order note Id={note_id} not found"))
        return http.json_response(copy.deepcopy(note))

    def _ep_note_delete(self, request: Request, id: str) -> Response:
        note_id = _parse_int(id, "id")
        if note_id <= 0:
            raise _bad_request()
        if self._state.notes.pop(note_id, None) is None:
            raise _Reply(_string(404, f"Order note Id={note_id} not found"))
        return _ok_empty()

    def _ep_notes_by_order(self, request: Request, order_id: str) -> Response:
        wanted = _parse_int(order_id, "orderId")
        display = self._bool_query(request, "displayToCustomer")
        if wanted <= 0:
            raise _bad_request()
        return http.json_response(copy.deepcopy(self._notes_of(wanted, display)))

    # ----------------------------------------------------------------- Shipment (Controllers/Shipping)

    def _ep_shipment_get_by_id(self, request: Request, id: str) -> Response:
        shipment_id = _parse_int(id, "id")
        if shipment_id <= 0:
            raise _bad_request()
        shipment = self._state.shipments.get(shipment_id)
        if shipment is None:
            raise _Reply(_string(404, f"Shipment Id={shipment_id} not found"))
        return http.json_response(copy.deepcopy(shipment))

    def _ep_shipments_by_order(self, request: Request, order_id: str) -> Response:
        """``GetShipmentsByOrderIdAsync``: the order's shipments, ``shipped`` filtering on ShippedDateUtc (an
        unknown order has none: an empty list, not 404)."""
        wanted = _parse_int(order_id, "orderId")
        shipped = self._bool_query(request, "shipped")
        found = [s for s in self._state.shipments.values() if s["order_id"] == wanted
                 and (shipped is None or (s["shipped_date_utc"] is not None) == shipped)]
        return http.json_response(copy.deepcopy(sorted(found, key=lambda s: s["id"])))

    def _ep_shipment_create(self, request: Request) -> Response:
        values = self._bind(SHIPMENT_DTO, request)
        if values["order_id"] not in self._state.orders:  # FK_Shipment_OrderId_Order_Id
            raise _server_error(500, 'The INSERT statement conflicted with the FOREIGN KEY constraint '
                                '"FK_Shipment_OrderId_Order_Id".', "Microsoft.Data.SqlClient.SqlException",
                                self.developer_mode)
        values["id"] = _next_id(self._state.shipments)  # identity column: a sent id is ignored
        self._state.shipments[values["id"]] = values
        return http.json_response(copy.deepcopy(values))

    def _ep_shipment_update(self, request: Request) -> Response:
        values = self._bind(SHIPMENT_DTO, request)
        if values["id"] not in self._state.shipments:
            raise _Reply(_string(404, "Shipment is not found"))
        self._state.shipments[values["id"]] = values  # FromDto: the whole entity is replaced
        return _ok_empty()

    def _ep_shipment_item_create(self, request: Request) -> Response:
        values = self._bind(SHIPMENT_ITEM_DTO, request)
        if values["shipment_id"] not in self._state.shipments:  # FK_ShipmentItem_ShipmentId_Shipment_Id
            raise _server_error(500, 'The INSERT statement conflicted with the FOREIGN KEY constraint '
                                '"FK_ShipmentItem_ShipmentId_Shipment_Id".', "Microsoft.Data.SqlClient.SqlException",
                                self.developer_mode)
        values["id"] = _next_id(self._state.shipment_items)
        self._state.shipment_items[values["id"]] = values
        return http.json_response(copy.deepcopy(values))

    def _ep_shipment_items(self, request: Request, id: str) -> Response:
        shipment_id = _parse_int(id, "id")
        if shipment_id <= 0:
            raise _bad_request()
        items = [i for i in self._state.shipment_items.values() if i["shipment_id"] == shipment_id]
        return http.json_response(copy.deepcopy(sorted(items, key=lambda i: i["id"])))

    # ----------------------------------------------------------------- specification attributes (Controllers/Catalog)

    def _ep_spec_attributes(self, request: Request) -> Response:
        page_index = self._int_query(request, "pageIndex", 0)
        page_size = self._int_query(request, "pageSize", INT_MAX)
        items = sorted(self._state.spec_attributes.values(), key=lambda a: (a["display_order"], a["id"]))
        return http.json_response(_paged(items, page_index, page_size, False))

    def _ep_spec_attribute_create(self, request: Request) -> Response:
        values = self._bind(SPECIFICATION_ATTRIBUTE_DTO, request)
        values["id"] = _next_id(self._state.spec_attributes)
        self._state.spec_attributes[values["id"]] = values
        return http.json_response(copy.deepcopy(values))

    def _ep_spec_options(self, request: Request, attribute_id: str) -> Response:
        wanted = _parse_int(attribute_id, "specificationAttributeId")
        options = [o for o in self._state.spec_options.values() if o["specification_attribute_id"] == wanted]
        return http.json_response(copy.deepcopy(sorted(options, key=lambda o: (o["display_order"], o["id"]))))

    def _ep_spec_option_create(self, request: Request) -> Response:
        values = self._bind(SPECIFICATION_OPTION_DTO, request)
        if values["specification_attribute_id"] not in self._state.spec_attributes:
            raise _server_error(500, 'The INSERT statement conflicted with the FOREIGN KEY constraint '
                                '"FK_SpecificationAttributeOption_SpecificationAttributeId_SpecificationAttribute_Id".',
                                "Microsoft.Data.SqlClient.SqlException", self.developer_mode)
        values["id"] = _next_id(self._state.spec_options)
        self._state.spec_options[values["id"]] = values
        return http.json_response(copy.deepcopy(values))

    def _ep_product_specs(self, request: Request) -> Response:
        product_id = self._int_query(request, "productId", 0)
        specs = [m for m in self._state.product_specs.values() if product_id in (0, m["product_id"])]
        return http.json_response(copy.deepcopy(sorted(specs, key=lambda m: (m["display_order"], m["id"]))))

    def _ep_product_spec_create(self, request: Request) -> Response:
        values = self._bind(PRODUCT_SPECIFICATION_DTO, request)
        if values["product_id"] not in self._state.products or \
                values["specification_attribute_option_id"] not in self._state.spec_options:
            raise _server_error(500, 'The INSERT statement conflicted with a FOREIGN KEY constraint of '
                                '"Product_SpecificationAttribute_Mapping".', "Microsoft.Data.SqlClient.SqlException",
                                self.developer_mode)
        values["id"] = _next_id(self._state.product_specs)
        self._state.product_specs[values["id"]] = values
        return http.json_response(copy.deepcopy(values))

    def _ep_product_spec_update(self, request: Request) -> Response:
        values = self._bind(PRODUCT_SPECIFICATION_DTO, request)
        if values["id"] not in self._state.product_specs:
            raise _Reply(_string(404, f"Product specification attribute Id={values['id']} is not found"))
        self._state.product_specs[values["id"]] = values  # FromDto: the whole entity is replaced
        return _ok_empty()

    def _ep_product_spec_delete(self, request: Request, id: str) -> Response:
        spec_id = _parse_int(id, "id")
        if spec_id <= 0:
            raise _bad_request()
        if self._state.product_specs.pop(spec_id, None) is None:
            raise _Reply(_string(404, f"Product specification attribute Id={spec_id} not found"))
        return _ok_empty()

    def specifications(self, product_id: int) -> dict[str, str]:
        """The product's specification attributes as ``{attribute name: option name}`` (sandbox inspection)."""
        with self._lock:
            found = {}
            for mapping in self._state.product_specs.values():
                if mapping["product_id"] != product_id:
                    continue
                option = self._state.spec_options[mapping["specification_attribute_option_id"]]
                attribute = self._state.spec_attributes[option["specification_attribute_id"]]
                found[attribute["name"]] = option["name"]
            return found

    # ----------------------------------------------------------------- OrderItem, Customer, Address

    def _ep_order_items(self, request: Request, order_id: str) -> Response:
        """``OrderItem/GetOrderItems/{orderId}``: the order's items (an unknown order has none: an empty list)."""
        wanted = _parse_int(order_id, "orderId")
        if wanted <= 0:
            raise _bad_request()
        items = sorted((i for i in self._state.order_items.values() if i["order_id"] == wanted),
                       key=lambda item: item["id"])
        return http.json_response(copy.deepcopy(items))

    def _ep_customer_get_by_id(self, request: Request, id: str) -> Response:
        customer_id = _parse_int(id, "id")
        if customer_id <= 0:
            raise _bad_request()
        customer = self._state.shoppers.get(customer_id)
        if customer is None and customer_id in self._state.customers:
            api = self._state.customers[customer_id]
            customer = {**CUSTOMER_DTO.defaults(), "id": api.id, "email": api.email, "username": api.email,
                        "customer_guid": api.customer_guid, "active": api.active}
        if customer is None:
            raise _Reply(_string(404, f"Customer Id={customer_id} not found"))
        return http.json_response(copy.deepcopy(customer))

    def _ep_customer_get_by_email(self, request: Request) -> Response:
        """``GetCustomerByEmailAsync``: the lowest id with that e-mail (the database collation ignores case),
        deleted customers included, as nopCommerce's query does not filter them."""
        email = self._query(request, "email")
        if not email:
            raise _invalid({"email": ["The email field is required."]})
        lowered = email.lower()
        found = sorted((c for c in self._state.shoppers.values() if str(c.get("email") or "").lower() == lowered),
                       key=lambda c: c["id"])
        if not found:
            raise _Reply(_string(404, f"Customer email={email} not found"))
        return http.json_response(copy.deepcopy(found[0]))

    def _ep_customer_update(self, request: Request) -> Response:
        values = self._bind(CUSTOMER_DTO, request)
        if values["id"] not in self._state.shoppers:
            raise _Reply(_string(404, f"Customer Id={values['id']} is not found"))
        self._state.shoppers[values["id"]] = values  # FromDto: the whole entity is replaced
        return _ok_empty()

    def _ep_customer_attributes(self, request: Request) -> Response:
        """``CustomerAttribute/GetAll`` (a POST in the plugin), in display order."""
        attributes = sorted(self._state.customer_attributes.values(), key=lambda a: (a["display_order"], a["id"]))
        return http.json_response(copy.deepcopy(attributes))

    def _ep_customer_attribute_values(self, request: Request, attribute_id: str) -> Response:
        """``CustomerAttributeValue/GetAll/{attributeId}``: an unknown attribute has no values (200, [])."""
        wanted = _parse_int(attribute_id, "attributeId")
        values = sorted((v for v in self._state.customer_attribute_values.values()
                         if v["customer_attribute_id"] == wanted), key=lambda v: (v["display_order"], v["id"]))
        return http.json_response(copy.deepcopy(values))

    def _ep_address_get_by_id(self, request: Request, id: str) -> Response:
        address_id = _parse_int(id, "id")
        if address_id <= 0:
            raise _bad_request()
        address = self._state.addresses.get(address_id)
        if address is None:
            raise _Reply(_string(404, f"Address Id={address_id} not found"))
        return http.json_response(copy.deepcopy(address))

    # ----------------------------------------------------------------- Product

    def _ep_product_get_by_id(self, request: Request, id: str) -> Response:
        product_id = _parse_int(id, "id")
        if product_id <= 0:
            raise _bad_request()
        product = self._state.products.get(product_id)
        if product is None:
            raise _Reply(_string(404, f"Product Id={product_id} not found"))
        return http.json_response(copy.deepcopy(product))

    def _ep_product_get_by_sku(self, request: Request) -> Response:
        sku = self._required_query(request, "sku")
        product = self._find_product_by_sku(sku)
        if product is None:
            raise _Reply(_string(404, f"Product sku={sku} not found"))
        return http.json_response(copy.deepcopy(product))

    def _ep_product_update(self, request: Request) -> Response:
        values = self._bind(PRODUCT_DTO, request)
        existing = self._state.products.get(values["id"])
        if existing is None:
            raise _Reply(_string(404, f"Product Id={values['id']} is not found"))
        self._state.products[values["id"]] = values  # FromDto: the whole entity is replaced
        if values["stock_quantity"] != existing["stock_quantity"]:
            self._record_inventory(values, "Product/Update", None)
        return _ok_empty()

    def _ep_product_adjust(self, request: Request, product_id: str) -> Response:
        """``AdjustInventoryAsync``: adds ``quantityToChange`` only when stock is managed per product."""
        wanted = _parse_int(product_id, "productId")
        raw_quantity = self._required_query(request, "quantityToChange")
        quantity = _parse_int(raw_quantity, "quantityToChange")
        attributes_xml = self._json_body(request, optional=True)
        if attributes_xml is not None and not isinstance(attributes_xml, str):
            raise _invalid({"": ["Error converting the body to type 'System.String' (attributesXml)."]})
        if wanted <= 0:
            raise _bad_request()
        product = self._state.products.get(wanted)
        if product is None:
            raise _Reply(_string(404, f"Product Id={wanted} is not found"))
        if quantity == 0:
            return _ok_empty()
        if product["manage_inventory_method_id"] == 1 and not product["use_multiple_warehouses"]:
            product["stock_quantity"] += quantity
        else:
            self._record_inventory(product, "Product/AdjustInventory", quantity)
        return _ok_empty()

    # ----------------------------------------------------------------- admin (no auth, no faults)

    def _ep_admin_state(self, request: Request) -> Response:
        return http.json_response(self.snapshot())

    def _ep_admin_reset(self, request: Request) -> Response:
        self.reset()
        return http.json_response({"ok": True})

    def _ep_admin_set_faults(self, request: Request) -> Response:
        body = http.read_json_object(request)
        if body is None:
            return _admin_error("the request body must be a JSON object")
        body = dict(body)
        slow = body.pop("slow_next", None)
        try:
            if slow is not None:  # {"n": 1, "seconds": 12, "path": "ordernote/create", "carry_out": "late"}
                if not isinstance(slow, dict) or slow.get("carry_out", "late") not in ("late", "early"):
                    raise ValueError("slow_next must be an object like {'n': 1, 'seconds': 12, 'carry_out': 'late'}")
                self.slow_next(int(slow.get("n", 1)), float(slow["seconds"]),
                               path=str(slow.get("path", "ordernote/create")), carry_out=slow.get("carry_out", "late"))
            self.faults.configure(body)
        except (TypeError, ValueError, KeyError) as error:
            return _admin_error(str(error))
        return http.json_response({"ok": True, "plan": self.faults.plan.to_dict()})

    def _ep_admin_clear_faults(self, request: Request) -> Response:
        self.faults.clear()
        with self._slow_lock:
            self._slow.clear()
        return http.json_response({"ok": True})

    def _ep_admin_seed_order(self, request: Request) -> Response:
        body = http.read_json_object(request)
        if body is None:
            return _admin_error("the request body must be a JSON object (an order, nopCommerce or wire names)")
        try:
            return http.json_response(self.seed_order(body), status=201)
        except ValueError as error:
            return _admin_error(str(error))

    def _ep_admin_checkout(self, request: Request) -> Response:
        body = http.read_json_object(request)
        if body is None or not isinstance(body.get("Order"), dict):
            return _admin_error("the request body must be order.placed data: {Order, OrderItems, Customer, ...}")
        try:
            return http.json_response(self.place_order(body), status=201)
        except (TypeError, ValueError, KeyError) as error:
            return _admin_error(str(error))

    def _ep_admin_order_action(self, request: Request, order_id: str, action: str) -> Response:
        """``/_sandbox/orders/{id}/pay|ship|deliver|cancel|refund`` (refund: optional ``{"amount": 5.0}``)."""
        body = http.read_json_object(request) or {}
        actions: dict[str, Callable[[int], dict[str, Any]]] = {
            "pay": self.mark_paid, "ship": self.ship, "deliver": lambda oid: self.ship(oid, delivered=True),
            "cancel": self.cancel, "refund": lambda oid: self.refund(oid, body.get("amount")),
        }
        if action not in actions:
            return _admin_error(f"unknown action {action!r}; one of {', '.join(actions)}", status=404)
        try:
            return http.json_response(actions[action](int(order_id)))
        except KeyError:
            return _admin_error(f"no order {order_id}", status=404)
        except ValueError as error:
            return _admin_error(str(error))

    def _ep_admin_seed_product(self, request: Request) -> Response:
        body = http.read_json_object(request)
        if body is None:
            return _admin_error("the request body must be a JSON object like {name, sku, stock, manage, price}")
        try:
            return http.json_response(self.seed_product(**body), status=201)
        except (TypeError, ValueError) as error:
            return _admin_error(str(error))


# --------------------------------------------------------------------------- helpers


def _parse_int(raw: str, name: str) -> int:
    """An ``int`` route/query value; a value that does not bind is a 400 validation problem."""
    if not _INT_PATTERN.match(raw) or not INT_MIN <= int(raw) <= INT_MAX:
        raise _invalid({name: [f"The value '{raw}' is not valid."]})
    return int(raw)


def _id_array(raw: str | None) -> list[int]:
    """The plugin's ``ToIdArray``: split on ``;`` and silently drop what is not an int ("10,20" -> [])."""
    if not raw:
        return []
    return [int(part) for part in raw.split(";") if _INT_PATTERN.match(part) and INT_MIN <= int(part) <= INT_MAX]


def _wrap_int32(value: int) -> int:
    return (value + 2**31) % 2**32 - 2**31


def _paged(items: list[dict[str, Any]], page_index: int, page_size: int, only_count: bool) -> dict[str, Any]:
    """``ToPagedListAsync`` + ``PagedList`` + ``PagedListDto`` (snake_case), including their int arithmetic."""
    page_size = max(page_size, 1)
    total = len(items)
    total_pages = total // page_size + (1 if total % page_size else 0)
    skip = max(_wrap_int32(page_index * page_size), 0)
    data = [] if only_count else items[skip : skip + page_size]
    return {
        "total_count": total,
        "total_pages": total_pages,
        "has_previous_page": page_index > 0,
        "has_next_page": page_index + 1 < total_pages,
        "items": copy.deepcopy(data),
        "page_index": page_index,
        "page_size": page_size,
    }


def _seed_values(spec: DtoSpec, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Seeding input (nopCommerce or wire names) converted to wire values; strict about unknown keys."""
    values: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in raw.items():
        name = snake_case(key)
        if name not in spec.kinds:
            unknown.append(key)
            continue
        try:
            values[name] = _coerce(spec.kinds[name], value, key)
        except _BindError as error:
            raise ValueError(str(error)) from error
    if unknown:
        raise ValueError(f"unknown {spec.name} fields: {', '.join(sorted(unknown))}")
    return values


# checkout stores both sides of every amount; data that gives only the incl.-tax side is a shop without tax
_ORDER_TAX_PAIRS = (("OrderSubtotalInclTax", "OrderSubtotalExclTax"),
                    ("OrderSubTotalDiscountInclTax", "OrderSubTotalDiscountExclTax"),
                    ("OrderShippingInclTax", "OrderShippingExclTax"),
                    ("PaymentMethodAdditionalFeeInclTax", "PaymentMethodAdditionalFeeExclTax"))
_ITEM_TAX_PAIRS = (("UnitPriceInclTax", "UnitPriceExclTax"), ("PriceInclTax", "PriceExclTax"),
                   ("DiscountAmountInclTax", "DiscountAmountExclTax"))


def _with_excl_tax(values: dict[str, Any], pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    for incl, excl in pairs:
        if values.get(excl) is None and values.get(incl) is not None:
            values[excl] = values[incl]
        if values.get(incl) is None and values.get(excl) is not None:
            values[incl] = values[excl]
    return values


def _product_summary(product: Mapping[str, Any]) -> dict[str, Any]:
    method = product["manage_inventory_method_id"]
    return {
        "id": product["id"],
        "name": product["name"],
        "sku": product["sku"],
        "stock_quantity": product["stock_quantity"],
        "manage_inventory_method_id": method,
        "manage_inventory_method": MANAGE_INVENTORY_METHODS.get(method),
        "stock_managed": method == 1,
        "price": product["price"],
        "published": product["published"],
        "deleted": product["deleted"],
    }
