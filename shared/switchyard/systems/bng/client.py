"""BNG ERP client: the calls of docs/bng-contract.md, with the paths and external-reference field names of
the connection.

* **Auth** is an API key in a header (``X-Api-Key`` unless the connection names another).
* **Errors** are classified by ``connectors.http.send``; BNG's own ``message`` (which names every invalid
  field) is put into the error's message, so a dead letter says what BNG refused and why. A ``409`` for a
  taken external id is ``DuplicateExternalIdError`` carrying BNG's ``existingId``.
* **Rate limit**: BNG publishes 120 requests per minute per key and answers ``429`` with ``Retry-After``.
  The client waits in-process while the total wait stays within ``max_rate_limit_wait_seconds`` (a step
  or a worker has a timeout); a longer wait leaves as RetryableError ``rate_limited`` with ``retry_after``,
  which the worker requeues and the state machine retries on its throttled budget.
* **Creates are found before they are made**, by the caller (``find_customer``, ``find_sales_order``): a
  create whose answer was lost answers ``409`` with the holder's id when repeated, never a second entity.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from switchyard.connectors.http import DEFAULT_TIMEOUT, jsonable, send
from switchyard.errors import ConnectionConfigError, PermanentError, RetryableError

SYSTEM = "BNG"
DEFAULT_MAX_RATE_LIMIT_WAIT_SECONDS = 20.0
PAGE_SIZE = 200


class BngPaths(BaseModel):
    """Collection paths under the API prefix (a BNG extension may name them otherwise)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    customers: str = "/customers"
    sales_orders: str = "/sales-orders"
    shipments: str = "/shipments"
    products: str = "/products"
    inventory_transactions: str = "/inventory-transactions"


class BngFields(BaseModel):
    """Wire names of the two external references (Switchyard's ids kept in BNG)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    external_id: str = Field(default="ExternalID", min_length=1)
    external_order_id: str = Field(default="ExternalOrderID", min_length=1)


class BngConnection(BaseModel):
    """The connection secret: ``{"base_url", "api_key"}`` plus optional ``api_prefix``, ``api_key_header``,
    ``webhook_secrets``, ``paths`` and ``fields`` (docs/bng-contract.md#connection)."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    base_url: str = Field(min_length=1)
    api_key: str = Field(min_length=1, repr=False)
    api_prefix: str = "/api/v1"
    api_key_header: str = Field(default="X-Api-Key", min_length=1)
    webhook_secrets: tuple[str, ...] = Field(default=(), repr=False)
    paths: BngPaths = BngPaths()
    fields: BngFields = BngFields()
    max_rate_limit_wait_seconds: float = Field(default=DEFAULT_MAX_RATE_LIMIT_WAIT_SECONDS, ge=0)

    @classmethod
    def from_secret(cls, value: Mapping[str, Any]) -> BngConnection:
        try:
            return cls.model_validate(dict(value) if isinstance(value, Mapping) else value)
        except ValidationError as exc:
            # the field names only: never echo the key
            problems = ", ".join(".".join(map(str, e["loc"])) or "(the secret itself)" for e in exc.errors())
            raise ConnectionConfigError(f"BNG connection is incomplete or invalid: {problems}") from None


class DuplicateExternalIdError(PermanentError):
    """BNG 409: the external id is taken; ``existing_id`` is the customer or sales order holding it."""

    def __init__(self, message: str, *, existing_id: str | None, **kwargs: Any) -> None:
        super().__init__(message, reason="duplicate_external_id", **kwargs)
        self.existing_id = existing_id


class BngClient:
    """One BNG account. ``sleep`` and ``clock`` are injectable so tests wait on a fake clock."""

    def __init__(self, connection: BngConnection, *, transport: httpx.BaseTransport | None = None,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.connection = connection
        self._sleep = sleep
        self._clock = clock
        self._prefix = "/" + connection.api_prefix.strip("/") if connection.api_prefix.strip("/") else ""
        self._http = httpx.Client(base_url=connection.base_url.rstrip("/"), timeout=timeout, transport=transport,
                                  headers={"Accept": "application/json",
                                           connection.api_key_header: connection.api_key})
        fields = connection.fields
        self._to_wire = {"ExternalID": fields.external_id, "ExternalOrderID": fields.external_order_id}
        self._from_wire = {wire: ours for ours, wire in self._to_wire.items()}
        self.rate_limit_waits = 0  # how often a 429 was waited out in-process (for logs and tests)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BngClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------- customers

    def find_customer(self, external_id: str) -> dict[str, Any] | None:
        return self._first(self.connection.paths.customers, {"externalId": external_id})

    def get_customer(self, customer_id: str) -> dict[str, Any]:
        return self._entity("GET", f"{self.connection.paths.customers}/{customer_id}")

    def create_customer(self, customer: Mapping[str, Any]) -> dict[str, Any]:
        return self._entity("POST", self.connection.paths.customers, json=customer)

    def update_customer(self, customer_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        return self._entity("PATCH", f"{self.connection.paths.customers}/{customer_id}", json=changes)

    # ----------------------------------------------------------------- sales orders

    def find_sales_order(self, external_order_id: str) -> dict[str, Any] | None:
        return self._first(self.connection.paths.sales_orders, {"externalOrderId": external_order_id})

    def get_sales_order(self, sales_order_id: str) -> dict[str, Any]:
        return self._entity("GET", f"{self.connection.paths.sales_orders}/{sales_order_id}")

    def create_sales_order(self, order: Mapping[str, Any]) -> dict[str, Any]:
        return self._entity("POST", self.connection.paths.sales_orders, json=order)

    def cancel_sales_order(self, sales_order_id: str, reason: str | None = None) -> dict[str, Any]:
        body = {"Reason": reason} if reason else {}
        return self._entity("POST", f"{self.connection.paths.sales_orders}/{sales_order_id}/cancel", json=body)

    # ----------------------------------------------------------------- shipments, products, inventory

    def shipments_of(self, sales_order_id: str) -> list[dict[str, Any]]:
        return list(self._pages(self.connection.paths.shipments, {"salesOrderId": sales_order_id}))

    def get_product(self, product_id: str) -> dict[str, Any]:
        return self._entity("GET", f"{self.connection.paths.products}/{product_id}")

    def product_by_sku(self, sku: str) -> dict[str, Any] | None:
        return self._first(self.connection.paths.products, {"sku": sku})

    def changed_since(self, collection: str, since: str, **filters: str) -> Iterator[dict[str, Any]]:
        """Every entity of ``collection`` (a ``BngPaths`` field name) changed at or after ``since``, oldest
        first, across pages (the contract's cursor)."""
        path = getattr(self.connection.paths, collection)
        yield from self._pages(path, {"changedSince": since, **filters})

    def changed_page(self, collection: str, since: str, *, limit: int,
                     after: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``changed_since``: its items (oldest change first) and the cursor of the next (None: last)."""
        query: dict[str, Any] = {"changedSince": since, "limit": limit, **({"after": after} if after else {})}
        path = getattr(self.connection.paths, collection)
        page = self._call("GET", path, params=query)
        if not isinstance(page, dict) or not isinstance(page.get("Items"), list):
            raise RetryableError(f"{SYSTEM} answered GET {path} without Items", reason="target_bad_response",
                                 target_response=page)
        return [self._in(item) for item in page["Items"]], page.get("NextCursor") or None

    # ----------------------------------------------------------------- plumbing

    def _first(self, path: str, params: Mapping[str, str]) -> dict[str, Any] | None:
        page = self._call("GET", path, params={**params, "limit": 1})
        items = page.get("Items") if isinstance(page, dict) else None
        if not isinstance(items, list):
            raise RetryableError(f"{SYSTEM} answered GET {path} without Items", reason="target_bad_response",
                                 target_response=page)
        return self._in(items[0]) if items else None

    def _pages(self, path: str, params: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        query: dict[str, Any] = {**params, "limit": PAGE_SIZE}
        while True:
            page = self._call("GET", path, params=query)
            if not isinstance(page, dict) or not isinstance(page.get("Items"), list):
                raise RetryableError(f"{SYSTEM} answered GET {path} without Items", reason="target_bad_response",
                                     target_response=page)
            for item in page["Items"]:
                yield self._in(item)
            cursor = page.get("NextCursor")
            if not cursor:
                return
            query = {**query, "after": cursor}

    def _entity(self, method: str, path: str, *, json: Any = None) -> dict[str, Any]:
        body = self._call(method, path, json=self._out(json) if json is not None else None)
        if not isinstance(body, dict):
            raise RetryableError(f"{SYSTEM} answered {method} {path} with something else than an object",
                                 reason="target_bad_response", target_response=body)
        return self._in(body)

    def _out(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {self._to_wire.get(key, key): value for key, value in body.items()}

    def _in(self, entity: Mapping[str, Any]) -> dict[str, Any]:
        return {self._from_wire.get(key, key): value for key, value in entity.items()}

    def _call(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        """One call; 429s are waited out while the total wait stays within the connection's budget."""
        url = f"{self._prefix}{path}"
        waited = 0.0
        while True:
            try:
                response = send(self._http, method, url, system=SYSTEM, params=dict(params or {}) or None,
                                json=jsonable(json) if json is not None else None)
                break
            except RetryableError as exc:
                wait = exc.retry_after
                if (exc.reason != "rate_limited" or wait is None
                        or waited + wait > self.connection.max_rate_limit_wait_seconds):
                    raise
                self.rate_limit_waits += 1
                waited += wait
                self._sleep(wait)
            except PermanentError as exc:
                raise self._explained(exc, method, url) from exc
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise RetryableError(f"{SYSTEM} answered {method} {url} with a body that is not JSON",
                                 reason="target_bad_response", target_status=response.status_code,
                                 target_response=response.text[:2000]) from None

    @staticmethod
    def _explained(exc: PermanentError, method: str, url: str) -> PermanentError:
        body = exc.target_response if isinstance(exc.target_response, dict) else {}
        said = body.get("message")
        code = body.get("error")
        details = {"target_status": exc.target_status, "target_response": exc.target_response}
        if exc.target_status == 409 and code in ("duplicate_external_id", "duplicate_external_order_id"):
            return DuplicateExternalIdError(f"{SYSTEM}: {said}", existing_id=body.get("existingId"), **details)
        if exc.target_status in (401, 403):
            return PermanentError(f"{SYSTEM} refused the API key on {method} {url} ({exc.target_status}): check "
                                  "api_key and api_key_header in the connection secret",
                                  reason="target_auth_failed", **details)
        if code == "unknown_product":
            return PermanentError(f"{SYSTEM} does not know the product: {said}", reason="unknown_product", **details)
        if said:
            return PermanentError(f"{SYSTEM} refused {method} {url} ({exc.target_status} {code}): {said}",
                                  reason=exc.reason, **details)
        return exc
