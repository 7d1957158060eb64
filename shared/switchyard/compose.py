"""Builds the services each Lambda runs, from its settings and the real adapters.

The only module that knows which adapter serves which port; handlers call it once per cold start.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from switchyard.aws import clients
from switchyard.aws.secrets import SecretReader
from switchyard.aws.sqs import SqsDeadLetters, SqsQueues
from switchyard.ingest import Authenticator, IngestService
from switchyard.settings import IngestSettings, StepSettings, WorkerSettings
from switchyard.signatures import (
    IntuitSignatureAuthenticator,
    SharedTokenAuthenticator,
    StandardWebhookAuthenticator,
)

# longer than DLQ retention (14 d) + queue retention (4 d): redrives stay deduplicated
IDEMPOTENCY_TTL_SECONDS = 21 * 24 * 3600


def build_ingest(settings: IngestSettings) -> IngestService:
    secrets = SecretReader(clients.client("secretsmanager"))

    authenticators: dict[str, tuple[tuple[str, ...], Authenticator]] = {}
    # signature scheme -> the secret's key holding the current values, and the authenticator they build
    schemes: dict[str, tuple[str, Any]] = {
        "standard-webhooks": ("signing_secrets", StandardWebhookAuthenticator),
        "shared-token": ("tokens", SharedTokenAuthenticator),
        "intuit-signature": ("verifier_tokens", IntuitSignatureAuthenticator),
    }

    def authenticator_for(source: str) -> Authenticator:
        config = settings.sources[source]
        key, build = schemes.get(config.signature, schemes["standard-webhooks"])
        secret = secrets.get_json(config.secret_arn)
        current = tuple(secret.get(key) or ())
        cached = authenticators.get(source)
        if cached is None or cached[0] != current:  # first use, or the secret was rotated
            cached = authenticators[source] = (current, build(current))
        return cached[1]

    return IngestService(
        routes=settings.routes,
        authenticator_for=authenticator_for,
        publisher=SqsQueues(clients.client("sqs")),
        max_body_bytes=settings.max_body_bytes,
        formats={name: source.format for name, source in settings.sources.items()},
        ack_statuses={name: source.ack_status for name, source in settings.sources.items()},
    )


class WorkerApp(NamedTuple):
    worker: Any  # FlowWorker
    idempotency_config: Any  # register the Lambda context on it per invocation


# What the QuickBooks token store writes into a connection secret: rotating tokens are no reason to rebuild.
_VOLATILE_SECRET_KEYS = frozenset({"access_token", "access_token_expires_at", "refresh_token",
                                   "refresh_token_expires_at", "tokens_refreshed_at"})


class ConnectionBound:
    """Builds an object (a target, the order-to-cash steps) from its connection secrets, and rebuilds it
    when a secret changes (key rotation, a new base URL) without a redeploy. ``factory`` receives
    ``{connection name: secret value}``."""

    def __init__(self, secrets: SecretReader, secret_arns: dict[str, str], factory: Any) -> None:
        self._secrets = secrets
        self._secret_arns = secret_arns
        self._factory = factory
        self._current: tuple[dict[str, Any], Any] | None = None

    def get(self) -> Any:
        values = {name: self._secrets.get_json(arn) for name, arn in self._secret_arns.items()}
        stable = {name: {k: v for k, v in value.items() if k not in _VOLATILE_SECRET_KEYS}
                  for name, value in values.items()}
        if self._current is None or self._current[0] != stable:
            self._current = (stable, self._factory(values))
        return self._current[1]


class ConnectionBoundTarget(ConnectionBound):
    def deliver(self, event: Any) -> Any:
        return self.get().deliver(event)


def build_worker(settings: WorkerSettings, *, metrics: Any = None, logger: Any = None) -> WorkerApp:
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    from switchyard.catalog import load_catalog
    from switchyard.connection_state import ConnectionGuard, DynamoConnectionStates
    from switchyard.drops import DynamoDropLog
    from switchyard.echoes import DynamoEchoLedger, EchoSuppressingTarget
    from switchyard.entity_state import DynamoEntityState
    from switchyard.table_keys import TableKeys, records_echoes
    from switchyard.worker import FlowWorker

    catalog = load_catalog()
    flow = catalog.flows[settings.flow]
    dynamodb = clients.client("dynamodb")
    keys = TableKeys.for_flow(flow)  # IAM lets this flow's functions reach these keys only
    state = DynamoEntityState(dynamodb, settings.idempotency_table, keys=keys)
    echoes = DynamoEchoLedger(dynamodb, settings.idempotency_table, keys=keys)
    target: Any
    if flow.runs_as == "state-machine":
        from switchyard.state_machines import ExecutionStarter

        if not settings.state_machine_arn:
            raise ValueError(f"flow {flow.name} runs as a state machine: SWITCHYARD_STATE_MACHINE_ARN is not set")
        target = ExecutionStarter(clients.client("stepfunctions"), settings.state_machine_arn)
    else:
        bound = ConnectionBoundTarget(
            SecretReader(clients.client("secretsmanager")), settings.connection_secret_arns,
            _target_factory(flow, catalog, settings, state, echoes))
        # only two-way pairs write what they will hear about again; the others have no echo to suppress
        target = EchoSuppressingTarget(bound, echoes) if records_echoes(flow) else bound

    config = IdempotencyConfig(
        expires_after_seconds=IDEMPOTENCY_TTL_SECONDS,
        response_hook=lambda response, _record: {**response, "duplicate": True},
    )
    persistence = DynamoDBPersistenceLayer(
        table_name=settings.idempotency_table, key_attr="id", expiry_attr="expiration"
    )
    queues = SqsQueues(clients.client("sqs"))
    # every connection the flow's functions use (a state-machine flow's steps too): while one waits for a
    # reconnect, its events wait in the queue instead of starting executions or reaching the target
    guard = ConnectionGuard(DynamoConnectionStates(dynamodb, settings.idempotency_table), flow.connections,
                            metrics=metrics, logger=logger)
    worker = FlowWorker(
        flow=flow,
        target=target,
        dead_letters=SqsDeadLetters(clients.client("sqs"), settings.dlq_url),
        delay=lambda receipt, seconds: queues.delay(settings.queue_url, receipt, seconds),
        requeue=lambda body, seconds: queues.requeue(settings.queue_url, body, seconds),
        max_receive_count=settings.max_receive_count,
        make_idempotent=idempotent_function(
            data_keyword_argument="key", config=config, persistence_store=persistence,
            key_prefix=keys.idempotency_prefix,
        ),
        metrics=metrics,
        logger=logger,
        guard=guard,
        drops=DynamoDropLog(dynamodb, settings.idempotency_table),  # keys: switchyard.table_keys.drop_key
        count_drop=_count_drop if metrics is not None else None,
    )
    return WorkerApp(worker=worker, idempotency_config=config)


def _count_drop(flow: str, reason: str) -> None:
    """``EventsDropped`` with the flow and the reason as dimensions (its own EMF record)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(name="EventsDropped", unit=MetricUnit.Count, value=1) as metric:
        metric.add_dimension(name="flow", value=flow)
        metric.add_dimension(name="reason", value=reason)


def _salesforce_usage(used: int, limit: int) -> None:
    """``SalesforceApiUsedPercent``: how much of the org's 24-hour API allocation is used (Sforce-Limit-Info)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(name="SalesforceApiUsedPercent", unit=MetricUnit.Percent, value=100.0 * used / limit):
        pass


def _count_mapping_warning(flow: str, warning: str) -> None:
    """``MappingWarnings``: a record was written with a mapping's fallback (e.g. no last name)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(name="MappingWarnings", unit=MetricUnit.Count, value=1) as metric:
        metric.add_dimension(name="flow", value=flow)
        metric.add_dimension(name="warning", value=warning)


def _systems(flow: Any, catalog: Any) -> dict[str, str]:
    """system -> connection name, for every connection the flow uses."""
    return {catalog.connections[name].system: name for name in flow.connections}


def _quickbooks_client(connection_secret: dict[str, Any], *, connection: str, secret_arn: str, table: str,
                       time_scale: float = 1.0) -> Any:
    """A QuickBooks client whose tokens live in the connection secret (one refresher per realm) and whose
    requests take permits from the realm's limiter shared by every function (DynamoDB)."""
    from switchyard.rate_limit import QBO_LIMITS, DynamoRateLimiter
    from switchyard.systems.quickbooks.client import QuickBooksClient, QuickBooksConnection
    from switchyard.table_keys import ConnectionKeys
    from switchyard.tokens import SecretsManagerTokenStore

    dynamodb = clients.client("dynamodb")
    keys = ConnectionKeys(connection)
    tokens = SecretsManagerTokenStore(clients.client("secretsmanager"), dynamodb, table, secret_arn, keys=keys)
    limiter = DynamoRateLimiter(dynamodb, table, QBO_LIMITS, time_scale=time_scale, keys=keys)
    # a short wait per request: a step that cannot get permits soon is retried later by the state machine
    return QuickBooksClient(QuickBooksConnection.from_secret(connection_secret), tokens, rate_limiter=limiter,
                            rate_limit_wait=5.0 / time_scale, connection_name=connection)


def _target_factory(flow: Any, catalog: Any, settings: WorkerSettings, state: Any, echoes: Any) -> Any:
    """connection secrets -> the flow's target; the mapping is loaded once, here (cold start)."""
    connection = flow.connection
    if "salesforce" in _systems(flow, catalog):  # Clarity ⇄ Salesforce (issue 13): both directions
        from switchyard.pairs.clarity_salesforce import target_factory

        return target_factory(flow, _systems(flow, catalog), state, echoes, usage_metric=_salesforce_usage,
                              warn=lambda warning: _count_mapping_warning(flow.name, warning))
    if flow.target in ("streak", "clarity"):
        from switchyard.pairs.clarity_streak import ClarityStreakPairs
        from switchyard.sync import DynamoPairStore
        from switchyard.systems.clarity.client import ClarityClient, ClarityConnection
        from switchyard.systems.clarity.sync_mapping import load_clarity_sync_mapping
        from switchyard.systems.clarity.target import ClarityTarget
        from switchyard.systems.streak.client import StreakClient, StreakConnection
        from switchyard.systems.streak.deal_mapping import load_deal_mapping
        from switchyard.systems.streak.deals import StreakDealTarget
        from switchyard.table_keys import TableKeys

        systems = _systems(flow, catalog)
        two_way = flow.two_way
        if two_way is not None:  # Clarity ⇄ Streak: both flows' mappings describe the pair
            reverse = catalog.flows[two_way.reverse]
            documents = {f.target: f.mapping_document for f in (flow, reverse)}
            deals, sync = load_deal_mapping(documents["streak"]), load_clarity_sync_mapping(documents["clarity"])
            pair_store = DynamoPairStore(clients.client("dynamodb"), settings.idempotency_table,
                                         keys=TableKeys.for_flow(flow))

        def build(secrets: dict[str, Any]) -> Any:
            pairs = None
            if two_way is not None:
                pairs = ClarityStreakPairs(
                    deals, sync, ClarityClient(ClarityConnection.from_secret(secrets[systems["clarity"]])),
                    StreakClient(StreakConnection.from_secret(secrets[systems["streak"]])), state, pair_store,
                    echoes, echo_window_seconds=two_way.echo_window_seconds)
            if flow.target == "streak":
                return StreakDealTarget(load_deal_mapping(flow.mapping_document),
                                        StreakClient(StreakConnection.from_secret(secrets[connection])), state,
                                        echoes, pairs=pairs)
            return ClarityTarget(load_clarity_sync_mapping(flow.mapping_document), pairs)

        return build
    if flow.target == "nopcommerce":
        from switchyard.systems.nopcommerce.client import NopCommerceClient, NopCommerceConnection
        from switchyard.systems.nopcommerce.stock import NopCommerceStockTarget

        quickbooks = _systems(flow, catalog).get("quickbooks")
        if quickbooks is None:
            raise ValueError(f"flow {flow.name}: nopCommerce stock needs a quickbooks connection under uses")

        def build(secrets: dict[str, Any]) -> Any:
            qbo = _quickbooks_client(secrets[quickbooks], connection=quickbooks,
                                     secret_arn=settings.connection_secret_arns[quickbooks],
                                     table=settings.idempotency_table, time_scale=settings.rate_limit_time_scale)
            shop = NopCommerceClient(NopCommerceConnection.from_secret(secrets[connection]))
            return NopCommerceStockTarget(qbo, shop, state)

        return build
    raise ValueError(f"no target for system {flow.target!r}")


class StepApp(NamedTuple):
    """The step Lambda of a state-machine flow: ``handle({"step", "state"})``. Every failure is logged with
    its cause (type, reason, message; the traceback of an unexpected one) before the state machine sees it."""

    flow: str
    steps: Any  # ConnectionBound -> OrderToCash
    dead_letters: Any
    logger: Any = None
    guard: Any = None  # ConnectionGuard of the flow's connections

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        from switchyard.state_machines import StepError, record_failure, run_step, step_failure

        step, state = event["step"], event["state"]
        if step == "record_failure":
            return record_failure(self.flow, state, self.dead_letters, execution=event.get("execution"))
        try:
            return run_step(lambda: self.steps.get().run(step, state), guard=self.guard)
        except Exception as exc:
            if self.logger is not None:
                expected = isinstance(exc, StepError)
                log = self.logger.warning if expected else self.logger.exception
                log("step failed", extra={"step": step, **step_failure(exc)})
            raise


def build_steps(settings: StepSettings, *, metrics: Any = None, logger: Any = None) -> StepApp:
    from switchyard.catalog import load_catalog
    from switchyard.connection_state import ConnectionGuard, DynamoConnectionStates
    from switchyard.entity_state import DynamoEntityState
    from switchyard.systems.nopcommerce.client import NopCommerceClient, NopCommerceConnection
    from switchyard.systems.quickbooks.order_mapping import load_order_mapping
    from switchyard.systems.quickbooks.order_to_cash import OrderToCash
    from switchyard.table_keys import TableKeys

    catalog = load_catalog()
    flow = catalog.flows[settings.flow]
    systems = _systems(flow, catalog)
    mapping = load_order_mapping(flow.mapping_document)
    state = DynamoEntityState(clients.client("dynamodb"), settings.idempotency_table, keys=TableKeys.for_flow(flow))

    def build(secrets: dict[str, Any]) -> Any:
        qbo = _quickbooks_client(secrets[systems["quickbooks"]], connection=systems["quickbooks"],
                                 secret_arn=settings.connection_secret_arns[systems["quickbooks"]],
                                 table=settings.idempotency_table, time_scale=settings.rate_limit_time_scale)
        shop = NopCommerceClient(NopCommerceConnection.from_secret(secrets[systems["nopcommerce"]]))
        return OrderToCash(mapping, qbo, shop, flow=flow.name, state=state)

    steps = ConnectionBound(SecretReader(clients.client("secretsmanager")), settings.connection_secret_arns, build)
    guard = ConnectionGuard(DynamoConnectionStates(clients.client("dynamodb"), settings.idempotency_table),
                            flow.connections, metrics=metrics, logger=logger)
    return StepApp(flow=flow.name, steps=steps,
                   dead_letters=SqsDeadLetters(clients.client("sqs"), settings.dlq_url), logger=logger,
                   guard=guard)
