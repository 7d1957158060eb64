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
               connection, sorted (``crm+shop``)       the two-way sync records of synced entity pairs; both
                                                       directions of a two-way pair share it (and a one-way
                                                       flow has it to itself)
echo           the pair                                the echo ledger: written by one direction, consumed by
                                                       the other
lease          the connection                          the refresher lease of the connection's OAuth tokens
ratelimit      the connection                          the connection's request limiter (every function that
                                                       calls it takes permits from the same item)
drop           the flow                                events accepted but deliberately not applied (stale,
                                                       superseded), kept for ``switchyard drops``
audit          the flow                                what the flow did with each order (``switchyard trace``):
                                                       one item per order, appended by the delivering function
connection     the connection                          whether the connection is usable or waits for a reconnect
                                                       (``switchyard.connection_state``), read by every function
                                                       that calls it
wait           the flow whose execution waits          a state machine's wait for a callback: the task token
                                                       stored against the entity, or an outcome that came first
                                                       (``switchyard.waits``); the flow's steps and the flows
                                                       that complete its waits (``completes_waits_of``)
breaker        the connection                          the connection's circuit breaker (closed, open, half-open;
                                                       ``switchyard.circuit_breaker``), read and written by every
                                                       function that calls it
poll           the polled connection                   the poller's scan cursor and a snapshot per item it has
                                                       seen (``switchyard.polling``), written only by its poller
pushed         the source                              ids of events its webhooks queued, written by ingest and
                                                       read by the source's sweep (a source both pushed and
                                                       polled)
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
    WAITS = "wait"
    CIRCUIT_BREAKER = "breaker"
    POLL = "poll"
    PUSHED = "pushed"
    AUDIT = "audit"


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
    Store.WAITS: ("GetItem", "UpdateItem"),
    Store.CIRCUIT_BREAKER: ("GetItem", "UpdateItem"),
    Store.POLL: ("GetItem", "PutItem"),
    Store.PUSHED: ("GetItem", "PutItem"),  # ingest puts, the sweep reads
    Store.AUDIT: ("UpdateItem",),  # appends only; reading the trail is the operator's
}



def keeps_connection_state(system: str) -> bool:
    """Whether the system's clients keep per-connection state in the table (a token lease, a shared rate
    limiter) and write their own connection secret (a rotating refresh token)."""
    from switchyard.registry import system as registered

    return registered(system).connection.keeps_state


class TableKeyError(ValueError):
    """A name cannot scope table keys (it would not make an unambiguous IAM prefix)."""


def _checked(name: str, what: str) -> str:
    if not _NAME.fullmatch(name):
        raise TableKeyError(f"{what} {name!r} cannot scope table keys: use lowercase letters, digits and '-'")
    return name


def _key(store: Store, scope: str, *parts: str) -> str:
    return SEPARATOR.join((store.value, scope, *parts))


def pair_scope(flow: FlowConfig) -> str:
    """``crm+shop`` for both ``shop-to-crm`` and ``crm-to-shop``: the flow's source and its
    target connection, sorted (a source and the connection of the same account share a name)."""
    return "+".join(sorted((_checked(flow.source, "source"), _checked(flow.connection, "connection"))))


def records_echoes(flow: FlowConfig) -> bool:
    """Whether the flow keeps an echo ledger: its writes come back as events its pair's other direction hears
    (the target registers echo rules), or its events may be that direction's writes coming back (the pair of
    its source and target lists its target under ``echoes_heard_by``)."""
    from switchyard.registry import find_pair
    from switchyard.registry import system as registered

    if registered(flow.target).echoes is not None:
        return True
    joined = find_pair(flow.source, flow.target)
    return joined is not None and flow.target in joined.echoes_heard_by


def drop_key(flow: str, event_id: str = "") -> str:
    """A dropped event's record; with no event id, the prefix of all of the flow's (for listing them)."""
    return _key(Store.DROPS, _checked(flow, "flow"), event_id)


def audit_key(flow: str, order: str) -> str:
    """What ``flow`` did with one order (``order`` is source data: anything but the separator is kept)."""
    return _key(Store.AUDIT, _checked(flow, "flow"), order.replace(SEPARATOR, "_"))


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


def wait_key(flow: str, wait: str, entity: str) -> str:
    """The wait ``wait`` of one entity in ``flow``'s state machine (its task token, or an early outcome)."""
    return _key(Store.WAITS, _checked(flow, "flow"), _checked(wait, "wait"), entity)


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

    def circuit_breaker(self) -> str:
        return _key(Store.CIRCUIT_BREAKER, self.connection, "state")


@dataclass(frozen=True)
class PollKeys:
    """The keys of one polled connection (cursor, snapshots) and of its source's pushed-event log."""

    connection: str
    source: str

    def __post_init__(self) -> None:
        _checked(self.connection, "connection")
        _checked(self.source, "source")

    def cursor(self) -> str:
        return _key(Store.POLL, self.connection, "cursor")

    def snapshot(self, item: str) -> str:
        return _key(Store.POLL, self.connection, "item", item)

    def item_key(self, table_key: str) -> str:
        """The item key back from ``snapshot(item)``."""
        return table_key.removeprefix(_key(Store.POLL, self.connection, "item") + SEPARATOR)

    def pushed(self, event_id: str) -> str:
        return pushed_key(self.source, event_id)


def pushed_key(source: str, event_id: str = "") -> str:
    """A source's record that its webhooks queued ``event_id``; with no id, the prefix of all of them."""
    return _key(Store.PUSHED, _checked(source, "source"), event_id)


def poll_grants(connection: str, source: str) -> tuple[TableGrant, ...]:
    """What a poller may reach: its connection's cursor and snapshots, and its source's pushed log."""
    return (TableGrant(Store.POLL, _checked(connection, "connection")),
            TableGrant(Store.PUSHED, _checked(source, "source"), only=("GetItem",)))


def pushed_grant(source: str) -> TableGrant:
    """What ingest needs for a source that is also swept: recording the ids its webhooks queued."""
    return TableGrant(Store.PUSHED, _checked(source, "source"), only=("PutItem",))


@dataclass(frozen=True, order=True)
class TableGrant:
    """One store's items under one scope, and the actions on them: ``prefix`` + anything."""

    store: Store
    scope: str
    only: tuple[str, ...] = ()  # a subset of the store's actions, for a function that needs fewer

    def __post_init__(self) -> None:
        if not set(self.only) <= set(STORE_ACTIONS[self.store]):
            raise ValueError(f"{self.store} items are never reached with {sorted(set(self.only))}")

    @property
    def prefix(self) -> str:
        return _key(self.store, self.scope) + SEPARATOR

    @property
    def actions(self) -> tuple[str, ...]:
        return self.only or STORE_ACTIONS[self.store]


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
        grants += [TableGrant(Store.IDEMPOTENCY, keys.flow), TableGrant(Store.DROPS, keys.flow),
                   TableGrant(Store.AUDIT, keys.flow)]
    if role == "steps":  # a step that applies nothing on purpose records the drop with its reason
        grants.append(TableGrant(Store.DROPS, keys.flow))
    # every function of the flow checks, before it starts, that its connections do not wait for a reconnect
    grants += [TableGrant(Store.CONNECTION_STATE, ConnectionKeys(name).connection) for name in flow.connections]
    # ... and each connection's circuit breaker: the worker checks it, whoever calls the target counts its failures
    grants += [TableGrant(Store.CIRCUIT_BREAKER, ConnectionKeys(name).connection) for name in flow.connections]
    if role == delivering_role(flow):
        grants.append(TableGrant(Store.STATE, keys.pair))
        if records_echoes(flow):
            grants.append(TableGrant(Store.ECHOES, keys.pair))
        for name in flow.connections:
            if keeps_connection_state(catalog.connections[name].system):
                connection = ConnectionKeys(name).connection
                grants += [TableGrant(Store.TOKEN_LEASE, connection), TableGrant(Store.RATE_LIMIT, connection)]
    if role == delivering_role(flow):
        waiting = [flow.name] if flow.state_machine is not None and flow.state_machine.waits else []
        grants += [TableGrant(Store.WAITS, _checked(name, "flow")) for name in (*waiting, *flow.completes_waits_of)]
    return tuple(sorted(set(grants)))
