"""Builds the services each Lambda runs, from its settings, the registered systems and the real adapters.

The only module that knows which adapter serves which port. Handlers call a ``build_*`` once per cold start;
what must follow a secret's rotation is a ``SecretBound`` (rebuilt only when a value changes), so a request
does no building of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

from switchyard import registry
from switchyard.aws import clients
from switchyard.aws.secrets import SecretReader
from switchyard.aws.sqs import SqsDeadLetters, SqsQueues
from switchyard.ingest import Authenticator, IngestService
from switchyard.registry import FlowContext, Secrets, StepRunner, Target
from switchyard.secret_bound import SecretBound
from switchyard.settings import IngestSettings, StepSettings, WorkerSettings
from switchyard.signatures import CORE_SCHEMES
from switchyard.tokens import STORE_WRITTEN_KEYS

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig

    from switchyard.catalog import Catalog, FlowConfig
    from switchyard.connection_state import ConnectionGuard
    from switchyard.drops import DropLog
    from switchyard.echoes import DynamoEchoLedger
    from switchyard.entity_state import DynamoEntityState
    from switchyard.events import FlowEvent
    from switchyard.rate_limit import DynamoRateLimiter, Limit
    from switchyard.state_machines import WaitSteps
    from switchyard.sync import DynamoPairStore
    from switchyard.targets import DeliveryResult
    from switchyard.tokens import TokenStore
    from switchyard.waits import Waits
    from switchyard.worker import DeadLetters, FlowWorker, Metrics

Built = TypeVar("Built")

# longer than DLQ retention (14 d) + queue retention (4 d): redrives stay deduplicated
IDEMPOTENCY_TTL_SECONDS = 21 * 24 * 3600


class Logger(Protocol):
    def warning(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def exception(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...


class Current(Protocol):
    """The step runner over the current connection secrets (a ``SecretBound``)."""

    def get(self) -> StepRunner: ...


def build_ingest(settings: IngestSettings) -> IngestService:
    secrets = SecretReader(clients.client("secretsmanager"))
    schemes = registry.signature_schemes(CORE_SCHEMES)
    authenticators: dict[str, SecretBound[Authenticator]] = {}
    for source, config in settings.sources.items():
        scheme = schemes.get(config.signature)
        if scheme is None:
            raise ValueError(f"source {source}: no signature scheme {config.signature!r} is registered")

        def build(values: Secrets, source: str = source, key: str = scheme.secret_key,
                  make: Callable[[tuple[str, ...]], Authenticator] = scheme.build) -> Authenticator:
            return make(tuple(values[source].get(key) or ()))

        authenticators[source] = SecretBound(secrets.get_json, {source: config.secret_arn}, build)

    return IngestService(
        routes=settings.routes,
        authenticator_for=lambda source: authenticators[source].get(),
        publisher=SqsQueues(clients.client("sqs")),
        max_body_bytes=settings.max_body_bytes,
        formats={name: source.format for name, source in settings.sources.items()},
        ack_statuses={name: source.ack_status for name, source in settings.sources.items()},
        on_queued=_pushed_recorder(settings),
        archive=_archive(settings),
        config_digest=settings.config_digest,
    )


def _archive(settings: IngestSettings) -> Any:
    if not settings.archive_bucket:
        return None
    from switchyard.archive import S3DeliveryArchive

    return S3DeliveryArchive(clients.client("s3"), settings.archive_bucket)


class AwsAdapters:
    """The registry's ``Adapters`` for one flow's functions: DynamoDB (under the flow's keys, which IAM lets it
    reach) and Secrets Manager. The flow's stores are made once and shared by everything built for it."""

    def __init__(self, flow: FlowConfig, *, table: str, connection_secret_arns: Mapping[str, str],
                 time_scale: float = 1.0) -> None:
        from switchyard.table_keys import TableKeys

        self._table = table
        self._secret_arns = connection_secret_arns
        self._time_scale = time_scale
        self._keys = TableKeys.for_flow(flow)
        self._dynamodb = clients.client("dynamodb")

    @property
    def time_scale(self) -> float:
        return self._time_scale

    @cached_property
    def _entity_state(self) -> DynamoEntityState:
        from switchyard.entity_state import DynamoEntityState

        return DynamoEntityState(self._dynamodb, self._table, keys=self._keys)

    @cached_property
    def _echo_ledger(self) -> DynamoEchoLedger:
        from switchyard.echoes import DynamoEchoLedger

        return DynamoEchoLedger(self._dynamodb, self._table, keys=self._keys)

    def entity_state(self) -> DynamoEntityState:
        return self._entity_state

    def echo_ledger(self) -> DynamoEchoLedger:
        return self._echo_ledger

    def pair_store(self) -> DynamoPairStore:
        from switchyard.sync import DynamoPairStore

        return DynamoPairStore(self._dynamodb, self._table, keys=self._keys)

    def token_store(self, connection: str) -> TokenStore:
        from switchyard.aws.tokens import SecretsManagerTokenStore
        from switchyard.table_keys import ConnectionKeys

        return SecretsManagerTokenStore(clients.client("secretsmanager"), self._dynamodb, self._table,
                                        self._secret_arns[connection], keys=ConnectionKeys(connection))

    def rate_limiter(self, connection: str, limits: Sequence[Limit]) -> DynamoRateLimiter:
        from switchyard.rate_limit import DynamoRateLimiter
        from switchyard.table_keys import ConnectionKeys

        return DynamoRateLimiter(self._dynamodb, self._table, tuple(limits), time_scale=self._time_scale,
                                 keys=ConnectionKeys(connection))

    def waits(self, flow: str) -> Waits:
        return build_waits(flow, self._table)


def flow_target(context: FlowContext) -> Callable[[Secrets], Target]:
    """The registered factory of a flow's target: its pair's for a two-way flow or where the pair of its source
    and target registers one (a one-way flow that needs both systems), else its target system's."""
    flow = context.flow
    joined = registry.pair(flow.source, flow.target) if flow.two_way is not None else \
        registry.find_pair(flow.source, flow.target)
    if joined is not None and joined.target is not None:
        return joined.target(context)
    if flow.two_way is not None:
        raise ValueError(f"flow {flow.name}: the pair of {flow.source!r} and {flow.target!r} registers no target")
    factory = registry.system(flow.target).target
    if factory is None:
        raise ValueError(f"flow {flow.name}: system {flow.target!r} registers no target for one-way flows")
    return factory(context)


class _CurrentTarget:
    """A flow's target over the current connection secrets."""

    def __init__(self, bound: SecretBound[Target]) -> None:
        self._bound = bound

    def deliver(self, event: FlowEvent) -> DeliveryResult:
        return self._bound.get().deliver(event)


def _connection_bound(settings: WorkerSettings | StepSettings, build: Callable[[Secrets], Built]) -> SecretBound[Built]:
    # the token store's own writes (a rotated refresh token) are no reason to rebuild
    return SecretBound(SecretReader(clients.client("secretsmanager")).get_json, settings.connection_secret_arns,
                       build, ignored_keys=STORE_WRITTEN_KEYS)


def _context(catalog: Catalog, flow: FlowConfig, settings: WorkerSettings | StepSettings) -> FlowContext:
    return FlowContext(flow=flow, catalog=catalog, adapters=AwsAdapters(
        flow, table=settings.idempotency_table, connection_secret_arns=settings.connection_secret_arns,
        time_scale=settings.rate_limit_time_scale))


def _pushed_recorder(settings: IngestSettings) -> Any:
    """For sources a poller sweeps: record the ids their webhooks queued, so the sweep does not queue them
    again. A failure to record is logged, not answered 503: the events are queued; at worst the sweep queues
    them once more after its grace period, and the targets find what exists."""
    if not settings.swept_sources:
        return None
    if not settings.table:
        raise ValueError("SWITCHYARD_SWEPT_SOURCES is set but SWITCHYARD_IDEMPOTENCY_TABLE is not")
    import logging

    from switchyard.polling import DynamoPushedLog

    dynamodb = clients.client("dynamodb")
    table = settings.table
    logs = {source: DynamoPushedLog(dynamodb, table, source=source) for source in settings.swept_sources}

    def record(source: str, events: Any) -> None:
        log = logs.get(source)
        if log is None:
            return
        try:
            log.record(_sweep_keys(source, events))
        except Exception:  # queued already: see the docstring
            logging.getLogger(__name__).exception("could not record pushed event ids for the sweep")

    return record


def _sweep_keys(source: str, events: Any) -> list[str]:
    """The ids the source's poll gives the changes these webhook events carry (their own ids, unless the
    system says otherwise: ``WebhookSource.sweep_key``)."""
    import json

    webhook = registry.system(source).webhook
    key = webhook.sweep_key if webhook is not None else None
    if key is None:
        return [event.event_id for event in events]
    keys = []
    for event in events:
        data = json.loads(event.body).get("data")
        swept = key(event.event_type, data) if isinstance(data, dict) else None
        keys.append(swept or event.event_id)
    return keys


class WorkerApp(NamedTuple):
    worker: FlowWorker
    idempotency_config: IdempotencyConfig  # register the Lambda context on it per invocation


def build_worker(settings: WorkerSettings, *, metrics: Metrics | None = None,
                 logger: Logger | None = None) -> WorkerApp:
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    from switchyard.audit import DynamoDeliveryAudit
    from switchyard.catalog import load_catalog
    from switchyard.circuit_breaker import CircuitBreaker, DynamoBreakerStore
    from switchyard.connection_state import ConnectionGuard, DynamoConnectionStates
    from switchyard.drops import DynamoDropLog
    from switchyard.echoes import EchoSuppressingTarget
    from switchyard.table_keys import TableKeys, records_echoes
    from switchyard.worker import FlowWorker

    catalog = load_catalog()
    flow = catalog.flows[settings.flow]
    dynamodb = clients.client("dynamodb")
    keys = TableKeys.for_flow(flow)  # IAM lets this flow's functions reach these keys only
    target: Target
    if flow.runs_as == "state-machine":
        from switchyard.state_machines import ExecutionStarter

        if not settings.state_machine_arn:
            raise ValueError(f"flow {flow.name} runs as a state machine: SWITCHYARD_STATE_MACHINE_ARN is not set")
        assert flow.state_machine is not None  # the catalog pairs runs_as: state-machine with its declaration
        target = ExecutionStarter(clients.client("stepfunctions"), settings.state_machine_arn, flow.state_machine)
    else:
        context = _context(catalog, flow, settings)
        bound = _CurrentTarget(_connection_bound(settings, flow_target(context)))
        # only two-way pairs write what they will hear about again; the others have no echo to suppress
        target = EchoSuppressingTarget(bound, context.adapters.echo_ledger()) if records_echoes(flow) else bound

    config = IdempotencyConfig(
        expires_after_seconds=IDEMPOTENCY_TTL_SECONDS,
        response_hook=lambda response, _record: {**response, "duplicate": True},
    )
    persistence = DynamoDBPersistenceLayer(
        table_name=settings.idempotency_table, key_attr="id", expiry_attr="expiration"
    )
    # configured now, not by the first call: a batch's entities run side by side, and a call that found the
    # layer half-configured by another would record with Powertools' default expiry, not ours
    persistence.configure(config, key_prefix=keys.idempotency_prefix)
    queues = SqsQueues(clients.client("sqs"))
    # every connection the flow's functions use (a state-machine flow's steps too): while one waits for a
    # reconnect, its events wait in the queue instead of starting executions or reaching the target
    guard = ConnectionGuard(DynamoConnectionStates(dynamodb, settings.idempotency_table), flow.connections,
                            metrics=metrics, logger=logger)
    # the target connection's circuit breaker, for a flow whose worker calls the target itself (a state
    # machine's worker only starts executions: their steps retry on their own budgets)
    breaker = (CircuitBreaker(DynamoBreakerStore(dynamodb, settings.idempotency_table), flow.connection,
                              metrics=metrics, logger=logger) if flow.runs_as == "worker" else None)
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
        breaker=breaker,
        drops=DynamoDropLog(dynamodb, settings.idempotency_table),  # keys: switchyard.table_keys.drop_key
        count_drop=_count_drop if metrics is not None else None,
        # what happened to each order (switchyard trace); keys: switchyard.table_keys.audit_key
        audit=DynamoDeliveryAudit(dynamodb, settings.idempotency_table, retention_days=settings.audit_retention_days),
        order_ref=catalog.sources[flow.source].order_ref,
    )
    return WorkerApp(worker=worker, idempotency_config=config)


def _count_drop(flow: str, reason: str) -> None:
    """``EventsDropped`` with the flow and the reason as dimensions (its own EMF record)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(name="EventsDropped", unit=MetricUnit.Count, value=1) as metric:
        metric.add_dimension(name="flow", value=flow)
        metric.add_dimension(name="reason", value=reason)


class StepApp(NamedTuple):
    """The step Lambda of a state-machine flow: ``handle({"step", "state"})`` runs a declared step, a wait's own
    step, or the failure handler; an EventBridge execution-status event dead-letters an execution that ended
    without one (timed out, aborted). Every failure is logged with its cause (type, reason, message; the
    traceback of an unexpected one) before the state machine sees it."""

    flow: str
    steps: Current
    dead_letters: DeadLetters
    logger: Logger | None = None
    guard: ConnectionGuard | None = None  # of the flow's connections
    wait_steps: WaitSteps | None = None  # the machinery's own steps, for a declaration with waits
    describe: Callable[[str], Mapping[str, Any]] | None = None  # executionArn -> DescribeExecution's answer
    drops: DropLog | None = None  # a step that applied nothing on purpose: its reason, for `switchyard drops`
    count_drop: Callable[[str, str], None] | None = None  # (flow, reason): EventsDropped by reason

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        from switchyard.machine_declaration import step_result_key
        from switchyard.state_machines import execution_ended, record_failure, requested_steps

        if "detail-type" in event:  # EventBridge: Step Functions Execution Status Change
            return execution_ended(self.flow, event.get("detail") or {}, self.dead_letters, describe=self.describe)
        state = event["state"]
        try:
            sequence = requested_steps(event)
        except Exception as exc:
            self._log_failure(f"route {state.get('route')!r}", exc)  # the route picks no steps
            raise
        if sequence is not None:
            # one task, several steps: each sees the results before it, as separate states would; the task's
            # result is the whole state (ResultPath "$"), so later states read each step's result by name
            current = dict(state)
            for position, step in enumerate(sequence):
                current[step_result_key(step)] = self._run(step, current, event, check=position == 0)
            return current
        step = event["step"]
        if step == "record_failure":
            return record_failure(self.flow, state, self.dead_letters, execution=event.get("execution"))
        return self._run(step, state, event)

    def _run(self, step: str, state: Mapping[str, Any], event: Mapping[str, Any], *,
             check: bool = True) -> dict[str, Any]:
        from switchyard.state_machines import StepError, naming_step, record_step_drop, run_step

        try:
            wait_steps = self.wait_steps
            if wait_steps is not None and wait_steps.handles(step):
                return run_step(lambda: wait_steps.run(event))  # calls no connection: no guard
            result = run_step(lambda: self.steps.get().run(step, state), guard=self.guard, check=check)
        except Exception as exc:
            self._log_failure(step, exc)
            if isinstance(exc, StepError):
                raise naming_step(exc, step) from exc.__cause__
            raise
        record_step_drop(self.flow, step, state, result, drops=self.drops, count_drop=self.count_drop,
                         logger=self.logger)
        return result

    def _log_failure(self, step: str, exc: Exception) -> None:
        from switchyard.state_machines import StepError, step_failure

        if self.logger is not None:
            log = self.logger.warning if isinstance(exc, StepError) else self.logger.exception
            log("step failed", extra={"step": step, **step_failure(exc)})


def declared_steps(context: FlowContext, names: Sequence[str]) -> Callable[[Secrets], StepRunner]:
    """The steps a flow's state machine declaration names (``<system>.customer``), from the systems'
    registered step sets: each set is prepared once (cold start: its mapping loads here) and built once per
    version of the connection secrets. An unknown step fails here, naming it."""
    from functools import partial

    from switchyard.state_machines import StepHandlers

    located = {name: registry.step(name) for name in names}
    prepared = {step_set: step_set.build(context) for step_set, _ in located.values()}

    def build(secrets: Secrets) -> StepRunner:
        runners = {step_set: make(secrets) for step_set, make in prepared.items()}
        return StepHandlers({name: partial(runners[step_set].run, step) for name, (step_set, step) in located.items()})

    return build


def build_steps(settings: StepSettings, *, metrics: Metrics | None = None, logger: Logger | None = None) -> StepApp:
    from switchyard.catalog import load_catalog
    from switchyard.connection_state import ConnectionGuard, DynamoConnectionStates
    from switchyard.drops import DynamoDropLog
    from switchyard.state_machines import WaitSteps
    from switchyard.waits import Waits

    catalog = load_catalog()
    flow = catalog.flows[settings.flow]
    declaration = flow.state_machine
    if declaration is None:
        raise ValueError(f"flow {flow.name} does not run as a state machine")
    steps: SecretBound[StepRunner] = _connection_bound(
        settings, declared_steps(_context(catalog, flow, settings), sorted(declaration.handlers)))
    guard = ConnectionGuard(DynamoConnectionStates(clients.client("dynamodb"), settings.idempotency_table),
                            flow.connections, metrics=metrics, logger=logger)
    stepfunctions = clients.client("stepfunctions")
    wait_steps = None
    if declaration.waits:
        waits = Waits(clients.client("dynamodb"), settings.idempotency_table, stepfunctions, flow.name)
        wait_steps = WaitSteps(declaration, waits, metrics=metrics, logger=logger)
    return StepApp(flow=flow.name, steps=steps,
                   dead_letters=SqsDeadLetters(clients.client("sqs"), settings.dlq_url), logger=logger,
                   guard=guard, wait_steps=wait_steps,
                   describe=lambda arn: stepfunctions.describe_execution(executionArn=arn),
                   drops=DynamoDropLog(clients.client("dynamodb"), settings.idempotency_table),
                   count_drop=_count_drop if metrics is not None else None)


def build_waits(flow_name: str, table: str) -> Waits:
    """The waits of another flow's state machine, for a function that completes, fails or cancels them (a
    flow with ``completes_waits_of``): ``complete(wait, entity, output)`` and friends (switchyard.waits)."""
    from switchyard.waits import Waits

    return Waits(clients.client("dynamodb"), table, clients.client("stepfunctions"), flow_name)


# --------------------------------------------------------------------------- poller (issue 10)

def build_poller(settings: Any, *, grace_seconds: float | None = None, time_left: Any = None) -> Any:
    """The ``Poller`` of one polled source (``PollerSettings``); ``grace_seconds`` overrides the sweep's
    grace for this run (an operator's "recover now" after a known sender outage). None while the connection's
    secret is still the placeholder the stack created (every value empty): not connected yet, nothing to poll."""
    import json
    from datetime import UTC, datetime, timedelta

    from switchyard.envelopes import validate_envelope
    from switchyard.polling import DynamoPollStore, DynamoPushedLog, Poller, PollSettings, QueueingPublisher
    from switchyard.table_keys import PollKeys

    factory = registry.system(settings.system).poll_source
    if factory is None:
        raise ValueError(f"system {settings.system!r} registers no poll source")
    secret = SecretReader(clients.client("secretsmanager")).get_json(settings.connection_secret_arn)
    if not any(secret.values()):
        return None
    dynamodb = clients.client("dynamodb")
    keys = PollKeys(connection=settings.connection, source=settings.source)
    poll = settings.poll
    start = poll.get("start")
    grace = timedelta(minutes=int(poll.get("sweep_grace_minutes", 10)))
    options = PollSettings(
        page_size=int(poll.get("page_size", 100)), max_pages=int(poll.get("max_pages", 10)),
        lookback=timedelta(days=int(poll.get("lookback_days", 30))),
        start=datetime.fromisoformat(start).replace(tzinfo=UTC) if start else None,
        mode="both" if settings.delivery == "both" else "poll",
        sweep_grace=grace if grace_seconds is None else timedelta(seconds=grace_seconds),
    )
    publish = QueueingPublisher(source=settings.source, routes=settings.routes,
                                publisher=SqsQueues(clients.client("sqs")))
    def validate(event: Any) -> None:  # the webhook's own schema: a poll queues nothing ingest would refuse
        validate_envelope(settings.source, json.loads(event.body))

    return Poller(factory(secret), DynamoPollStore(dynamodb, settings.table, keys=keys), publish, options,
                  pushed=DynamoPushedLog(dynamodb, settings.table, source=settings.source), validate=validate,
                  time_left=time_left)
