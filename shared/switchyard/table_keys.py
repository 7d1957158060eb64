"""Every partition key of the shared DynamoDB table is built here, and nowhere else.

Each key starts with ``<store>#<scope>#``: the kind of item, then who may reach it. IAM grants every
function exactly the prefixes it needs (``dynamodb:LeadingKeys``), and infra derives those grants from
the catalog with :func:`table_grants`, so the keys the library builds and the prefixes a function may
touch come from one place.

=============  ======================================  =====================================================
store          scope                                   items
=============  ======================================  =====================================================
idempotency    the flow                                Powertools idempotency records of the flow's worker
state          the pair: the flow's source and target  per-entity ordering, filtered orders, cross-references,
               connection, sorted (``clarity+streak``)  the two-way sync records of synced entity pairs; both
                                                       directions of a two-way pair share it (and a one-way
                                                       flow has it to itself)
echo           the pair                                the echo ledger: written by one direction, consumed by
                                                       the other
lease          the connection                          the refresher lease of the connection's OAuth tokens
ratelimit      the connection                          the connection's request limiter (every function that
                                                       calls it takes permits from the same item)
drop           the flow                                events accepted but deliberately not applied (stale,
                                                       superseded), kept for ``switchyard drops``
connection     the connection                          whether the connection is usable or waits for a reconnect
                                                       (``switchyard.connection_state``), read by every function
                                                       that calls it
=============  ======================================  =====================================================

Scopes are catalog names (``[a-z0-9-]``), so no scope is a prefix of another once ``#`` follows, and
no name can smuggle an IAM wildcard (``*``, ``?``) or a policy variable into a grant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from switchyard.catalog import Catalog, FlowConfig

SEPARATOR = "#"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")

FunctionRole = Literal["worker", "steps"]


class Store(StrEnum):
    IDEMPOTENCY = "idempotency"
    STATE = "state"
    ECHOES = "echo"
    TOKEN_LEASE = "lease"
    RATE_LIMIT = "ratelimit"
    CONNECTION_STATE = "connection"
    DROPS = "drop"


# The DynamoDB actions each store's code calls, and nothing more: IAM grants exactly these per prefix.
# A store that starts calling another action must add it here (the local stack's IAM check fails otherwise).
STORE_ACTIONS: dict[Store, tuple[str, ...]] = {
    Store.IDEMPOTENCY: ("GetItem", "PutItem", "UpdateItem", "DeleteItem"),  # Powertools' persistence layer
    Store.STATE: ("GetItem", "PutItem", "UpdateItem"),
    Store.ECHOES: ("PutItem", "DeleteItem"),
    Store.TOKEN_LEASE: ("UpdateItem",),
    Store.RATE_LIMIT: ("GetItem", "PutItem"),
    Store.CONNECTION_STATE: ("GetItem", "UpdateItem"),
    Store.DROPS: ("PutItem",),  # listing them is an operator's Scan, never a function's
}

# Targets whose writes come back as events the pair's other direction hears: their flows keep an echo ledger.
ECHO_TARGETS = frozenset({"streak", "clarity", "salesforce"})
# Systems whose clients keep per-connection state in the table: a token lease and a shared rate limiter.
CONNECTION_STATE_SYSTEMS = frozenset({"quickbooks"})


class TableKeyError(ValueError):
    """A name cannot scope table keys (it would not make an unambiguous IAM prefix)."""


def _checked(name: str, what: str) -> str:
    if not _NAME.fullmatch(name):
        raise TableKeyError(f"{what} {name!r} cannot scope table keys: use lowercase letters, digits and '-'")
    return name


def _key(store: Store, scope: str, *parts: str) -> str:
    return SEPARATOR.join((store.value, scope, *parts))


def pair_scope(flow: FlowConfig) -> str:
    """``clarity+streak`` for both ``clarity-to-streak`` and ``streak-to-clarity``: the flow's source and its
    target connection, sorted (a source and the connection of the same account share a name)."""
    return "+".join(sorted((_checked(flow.source, "source"), _checked(flow.connection, "connection"))))


def records_echoes(flow: FlowConfig) -> bool:
    """Whether the flow's writes come back as events (two-way systems), so it keeps an echo ledger."""
    return flow.target in ECHO_TARGETS


def drop_key(flow: str, event_id: str = "") -> str:
    """A dropped event's record; with no event id, the prefix of all of the flow's (for listing them)."""
    return _key(Store.DROPS, _checked(flow, "flow"), event_id)


@dataclass(frozen=True)
class TableKeys:
    """The keys one flow's functions build: idempotency per flow; state and echoes per pair."""

    flow: str
    pair: str

    def __post_init__(self) -> None:
        _checked(self.flow, "flow")
        for side in self.pair.split("+"):
            _checked(side, "pair side")

    @classmethod
    def for_flow(cls, flow: FlowConfig) -> TableKeys:
        return cls(flow=flow.name, pair=pair_scope(flow))

    @property
    def idempotency_prefix(self) -> str:
        """Powertools' ``key_prefix``: it stores ``<prefix>#<hash of the idempotency key>``."""
        return _key(Store.IDEMPOTENCY, self.flow)

    def state(self, kind: str, *parts: str) -> str:
        return _key(Store.STATE, self.pair, kind, *parts)

    def entity(self, entity: str) -> str:
        return self.state("entity", entity)

    def xref(self, namespace: str, key: str) -> str:
        return self.state("xref", namespace, key)

    def synced(self, namespace: str, key: str) -> str:
        return self.state("synced", namespace, key)

    def drop(self, event_id: str) -> str:
        return drop_key(self.flow, event_id)

    def echo(self, system: str, entity: str, key: str, fingerprint: str) -> str:
        return _key(Store.ECHOES, self.pair, system, entity, key, fingerprint)


@dataclass(frozen=True)
class ConnectionKeys:
    """The keys of state shared by every function that calls one connection (tokens, rate limit)."""

    connection: str

    def __post_init__(self) -> None:
        _checked(self.connection, "connection")

    def token_lease(self, realm: str) -> str:
        return _key(Store.TOKEN_LEASE, self.connection, realm)

    def rate_limit(self, key: str) -> str:
        return _key(Store.RATE_LIMIT, self.connection, key)

    def connection_state(self) -> str:
        return _key(Store.CONNECTION_STATE, self.connection, "state")


@dataclass(frozen=True, order=True)
class TableGrant:
    """One store's items under one scope, and the actions on them: ``prefix`` + anything."""

    store: Store
    scope: str

    @property
    def prefix(self) -> str:
        return _key(self.store, self.scope) + SEPARATOR

    @property
    def actions(self) -> tuple[str, ...]:
        return STORE_ACTIONS[self.store]


def delivering_role(flow: FlowConfig) -> FunctionRole:
    """The function that carries events into the target: the worker, or a state machine's steps function."""
    return "steps" if flow.runs_as == "state-machine" else "worker"


def table_grants(catalog: Catalog, flow: FlowConfig, role: FunctionRole) -> tuple[TableGrant, ...]:
    """What one function of ``flow`` may reach in the table, derived from the catalog."""
    if role == "steps" and flow.runs_as != "state-machine":
        raise ValueError(f"flow {flow.name!r} runs as a worker: it has no steps function")
    keys = TableKeys.for_flow(flow)
    grants: list[TableGrant] = []
    if role == "worker":  # the worker deduplicates deliveries; a state machine's worker only starts executions
        grants += [TableGrant(Store.IDEMPOTENCY, keys.flow), TableGrant(Store.DROPS, keys.flow)]
    # every function of the flow checks, before it starts, that its connections do not wait for a reconnect
    grants += [TableGrant(Store.CONNECTION_STATE, ConnectionKeys(name).connection) for name in flow.connections]
    if role == delivering_role(flow):
        grants.append(TableGrant(Store.STATE, keys.pair))
        if records_echoes(flow):
            grants.append(TableGrant(Store.ECHOES, keys.pair))
        for name in flow.connections:
            if catalog.connections[name].system in CONNECTION_STATE_SYSTEMS:
                connection = ConnectionKeys(name).connection
                grants += [TableGrant(Store.TOKEN_LEASE, connection), TableGrant(Store.RATE_LIMIT, connection)]
    return tuple(sorted(set(grants)))
