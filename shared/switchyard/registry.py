"""The external systems Switchyard connects, each described by one entry its own package registers.

A system is a package ``switchyard.systems.<name>`` whose ``__init__`` defines ``SYSTEM = System(...)``; code
that joins two systems is a module ``switchyard.pairs.<name>`` defining ``PAIR = Pair(...)``. Nothing here (nor
anywhere in the core) names a system: ingest, the worker, the composition root, the CDK app and the local stack
ask this registry. Adding a system is one package, one entry and its lines in ``flows.yaml``
(docs/adding-a-target-system.md).

Entries are cheap to import (the ingest Lambda reads them on its cold-start path): everything heavy (pydantic
models, HTTP clients, mapping documents) sits behind a callable that imports it when first called.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from switchyard.errors import ConnectionConfigError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from switchyard.catalog import Catalog, FlowConfig
    from switchyard.echoes import EchoLedger
    from switchyard.entity_state import EntityState
    from switchyard.events import FlowEvent
    from switchyard.ingest import Authenticator, SplitEvent
    from switchyard.rate_limit import Limit, RateLimiter
    from switchyard.sync import PairStore
    from switchyard.targets import DeliveryResult
    from switchyard.tokens import TokenStore

SYSTEMS_PACKAGE = "switchyard.systems"
PAIRS_PACKAGE = "switchyard.pairs"

Secret = Mapping[str, Any]  # one connection secret's JSON value
Secrets = Mapping[str, Secret]  # connection name -> its secret's value


class Target(Protocol):
    """What a flow's worker delivers each event to."""

    def deliver(self, event: FlowEvent) -> DeliveryResult: ...


class StepRunner(Protocol):
    """The steps of a state-machine flow: ``run(step, execution state)`` -> the step's result."""

    def run(self, step: str, state: Mapping[str, Any]) -> dict[str, Any]: ...


class WaitEnder(Protocol):
    """The waits of another flow's state machine, as a flow under ``completes_waits_of`` ends them
    (``switchyard.waits.Waits``): each returns "delivered", "stored" (before the wait began) or "waiting"."""

    def complete(self, wait: str, entity: str, output: Mapping[str, Any]) -> str: ...
    def fail(self, wait: str, entity: str, *, reason: str, message: str) -> str: ...
    def cancel(self, wait: str, entity: str, *, reason: str = "cancelled", message: str = "") -> str: ...


class Adapters(Protocol):
    """The stores a system's factories may use, as the composition root provides them (DynamoDB and Secrets
    Manager in Lambda, in memory in tests): systems never build an AWS adapter themselves."""

    def entity_state(self) -> EntityState: ...
    def echo_ledger(self) -> EchoLedger: ...
    def pair_store(self) -> PairStore: ...
    def token_store(self, connection: str) -> TokenStore: ...
    def rate_limiter(self, connection: str, limits: Sequence[Limit]) -> RateLimiter: ...
    def waits(self, flow: str) -> WaitEnder:
        """The waits of a flow's state machine (one the flow lists under ``completes_waits_of``)."""
        ...

    @property
    def time_scale(self) -> float:
        """Rate-limit windows are divided by it (the local stack runs them faster); 1 in production."""
        ...


# connection secret, connection name, adapters -> a client of the system
ClientFactory = Callable[[Secret, str, Adapters], Any]


@dataclass(frozen=True)
class ConnectionSpec:
    """How to reach one account of the system."""

    # the connection secret's keys, as the CDK app creates it (``base_url`` may point at a sandbox)
    secret_template: Mapping[str, Any]
    # the secret's model (pydantic, imported when called): what the client accepts, with its defaults
    settings: Callable[[], type[BaseModel]]
    client: ClientFactory
    # the client keeps per-connection state in the shared table (a token lease, a shared rate limiter) and
    # writes its own secret (a rotating refresh token): its functions get those grants
    keeps_state: bool = False


class SignatureScheme(NamedTuple):
    """How a source's deliveries are authenticated: the source secret's key holding the current values
    (several during a rotation), and the authenticator built from them."""

    secret_key: str
    build: Callable[[tuple[str, ...]], Authenticator]


class Delivery(NamedTuple):
    """One decoded delivery of a source whose format is not one signed envelope."""

    source: str
    document: Any
    routes: Mapping[str, Any]  # the source's routed event type -> flows
    event_type: str = ""  # the URL's ``?event=``, for senders that put it there


# a delivery -> its events (each validated as ingest validates it), and how many changes were acknowledged
# without being queued (None where the format has no such thing); raises WebhookRejectedError
Splitter = Callable[[Delivery], "tuple[list[SplitEvent], int | None]"]


@dataclass(frozen=True)
class WebhookSource:
    """What the system sends: its events, and how a delivery becomes events."""

    # event type -> its pydantic model (imported when called: codegen, dry-run, OpenAPI, tests)
    event_models: Callable[[], Mapping[str, type]]
    # delivery formats other than ``envelope`` (catalog ``SourceConfig.format``) -> how to split them
    formats: Mapping[str, Splitter] = field(default_factory=dict)
    # signature schemes the system's deliveries use that the core does not provide
    signatures: Mapping[str, SignatureScheme] = field(default_factory=dict)
    # a source whose poll sweeps its webhooks but cannot give them its ids: (event type, data) -> the id its
    # poll gives the same change (None: not one the poll reads); without it the webhook's id is the poll's
    sweep_key: Callable[[str, Mapping[str, Any]], str | None] | None = None


@dataclass(frozen=True)
class EchoRules:
    """For a system that sends events about objects Switchyard writes (two-way sync)."""

    # entity -> the attributes a sync writes, in the system's own names (an echo's fingerprint)
    synced_attributes: Mapping[str, tuple[str, ...]]
    # inbound event type -> (entity, attribute holding its key): events that can be Switchyard's own writes
    subjects: Mapping[str, tuple[str, str]]


@dataclass(frozen=True)
class FlowContext:
    """What a target or step factory gets: the flow, the catalog, the adapters, and clients of any connection
    the flow uses (built by their own system's factory: a system never imports another)."""

    flow: FlowConfig
    catalog: Catalog
    adapters: Adapters

    def system_of(self, connection: str) -> str:
        return self.catalog.connections[connection].system

    def connection_to(self, system_name: str) -> str:
        """The flow's connection to a system (its target's, or one under ``uses``)."""
        for name in self.flow.connections:
            if self.system_of(name) == system_name:
                return name
        raise ConnectionConfigError(f"flow {self.flow.name}: no connection to {system_name} under uses")

    def source_connection(self) -> str:
        """The flow's connection to the system its events come from (a source is named after its system),
        e.g. to read what changed or to write back a status."""
        return self.connection_to(self.flow.source)

    def client(self, connection: str, secrets: Secrets) -> Any:
        return system(self.system_of(connection)).connection.client(secrets[connection], connection, self.adapters)


# the flow's context -> (once per cold start: mappings are loaded here) a builder of the object from the
# connection secrets (called again whenever a secret changes)
TargetFactory = Callable[[FlowContext], Callable[[Secrets], Target]]
StepsFactory = Callable[[FlowContext], Callable[[Secrets], StepRunner]]


@dataclass(frozen=True)
class StepSet:
    """The steps a state-machine flow's Lambda runs, one object per connection secrets."""

    steps: tuple[str, ...]
    build: StepsFactory


class MappingSpec(NamedTuple):
    """A mapping document of flows targeting the system: its loader (validates and compiles) and its dry-run."""

    load: Callable[[str], Any]
    # (mapping file, event type, event data) -> (action, plan): what the event becomes, calling nobody
    dry_run: Callable[[str, str, Any], tuple[str, Any]]


@dataclass(frozen=True)
class SetupHooks:
    """What ``switchyard setup`` does with a system beyond filling its secrets (each optional).

    ``check``: one real, read-only call with the connection secret; returns what it reached ("pipeline Sales"),
    raises when refused. ``register_webhooks(connection secret, webhook URL, source secret, apply)``: make the
    system post to Switchyard through its own API, idempotently; returns one line per subscription (with
    ``apply`` False: what it would do, changing nothing). ``consent_url(connection secret, redirect URI,
    state)``: the OAuth 2 authorization URL a person opens once; the redirect's ``code`` is exchanged at the
    connection's token endpoint. ``instructions(webhook URL)``: what to set by hand in the vendor's console."""

    check: Callable[[Secret], str] | None = None
    register_webhooks: Callable[[Secret, str, Secret, bool], list[str]] | None = None
    consent_url: Callable[[Secret, str, str], str] | None = None
    instructions: Callable[[str], list[str]] | None = None


@dataclass(frozen=True)
class System:
    name: str
    connection: ConnectionSpec
    webhook: WebhookSource | None = None
    target: TargetFactory | None = None  # its target in one-way flows (two-way ones: a Pair's)
    step_sets: Mapping[str, StepSet] = field(default_factory=dict)
    mapping: MappingSpec | None = None
    echoes: EchoRules | None = None
    # connection secret -> the source a poller reads changes from (``switchyard.polling.PollSource``), for a
    # system that cannot push (or whose webhooks a poll sweeps)
    poll_source: Callable[[Secret], Any] | None = None
    setup: SetupHooks | None = None  # what `switchyard setup` checks, registers and asks consent for


@dataclass(frozen=True)
class Pair:
    """Code that joins two systems: the target of the flows between them (each direction of a ``two_way`` pair,
    or a one-way flow that needs both systems' clients), and steps that need both."""

    systems: frozenset[str]
    target: TargetFactory | None = None
    # the system the steps are named after (``run: <system>.customer``; one of the pair's) -> its step set
    step_sets: Mapping[str, StepSet] = field(default_factory=dict)
    # mapping documents of flows between the two: for flows into ``mapping_target`` even where that system
    # has documents of its own (a CRM's change events into a shop); else where their target system has none
    mapping: MappingSpec | None = None
    mapping_target: str | None = None
    # targets of one-way flows between the two whose events may be the other direction's own writes coming back
    # (that direction's target registers echo rules): their workers keep the echo ledger and drop them
    echoes_heard_by: frozenset[str] = frozenset()


class RegistryError(LookupError):
    """A flows.yaml name that no registered system or pair answers."""


def _entries(package: str, attribute: str) -> list[Any]:
    module = importlib.import_module(package)
    found = []
    for info in sorted(pkgutil.iter_modules(module.__path__), key=lambda i: i.name):
        entry = getattr(importlib.import_module(f"{package}.{info.name}"), attribute, None)
        if entry is not None:
            found.append(entry)
    return found


@cache
def systems() -> Mapping[str, System]:
    """Every registered system by name, in name order."""
    entries = _entries(SYSTEMS_PACKAGE, "SYSTEM")
    return {entry.name: entry for entry in entries}


def system(name: str) -> System:
    found = systems().get(name)
    if found is None:
        raise RegistryError(f"no system {name!r} is registered (the systems are {', '.join(systems())})")
    return found


@cache
def pairs() -> tuple[Pair, ...]:
    """Every registered pair (imports the pairs' modules: only two-way workers need them)."""
    return tuple(_entries(PAIRS_PACKAGE, "PAIR"))


def pair(first: str, second: str) -> Pair:
    found = find_pair(first, second)
    if found is None:
        raise RegistryError(f"no pair of {first!r} and {second!r} is registered")
    return found


def find_pair(first: str, second: str) -> Pair | None:
    for entry in pairs():
        if entry.systems == {first, second}:
            return entry
    return None


def signature_schemes(core: Mapping[str, SignatureScheme]) -> dict[str, SignatureScheme]:
    """The core's schemes and every system's own."""
    schemes = dict(core)
    for entry in systems().values():
        if entry.webhook is not None:
            schemes.update(entry.webhook.signatures)
    return schemes


def webhook(source_system: str) -> WebhookSource:
    found = system(source_system).webhook
    if found is None:
        raise RegistryError(f"system {source_system!r} sends no webhooks")
    return found


def _step_sets() -> list[tuple[str, StepSet]]:
    """(the system its steps are named after, step set) of every system and every pair."""
    found = [(entry.name, step_set) for entry in systems().values() for step_set in entry.step_sets.values()]
    found += [(name, step_set) for entry in pairs() for name, step_set in entry.step_sets.items()]
    return found


def step_names() -> frozenset[str]:
    """Every step a state-machine declaration may run: ``<system>.<step>`` of every registered step set (a
    system's, or a pair's named after one of its systems)."""
    return frozenset(f"{name}.{step}" for name, step_set in _step_sets() for step in step_set.steps)


def step(qualified: str) -> tuple[StepSet, str]:
    """``<system>.<step>`` (e.g. a state-machine declaration's task) -> its step set and the step's name."""
    name, _, step_name = qualified.partition(".")
    for step_set in system(name).step_sets.values():  # its own first: a pair's module is heavier to import
        if step_name in step_set.steps:
            return step_set, step_name
    for entry in pairs():
        pair_set = entry.step_sets.get(name)
        if pair_set is not None and step_name in pair_set.steps:
            return pair_set, step_name
    raise RegistryError(f"system {name!r} registers no step {step_name!r}")


def echo_rules(system_name: str) -> EchoRules | None:
    entry = systems().get(system_name)
    return entry.echoes if entry is not None else None
