"""Builds the services each Lambda runs, from its settings and the real adapters.

The only module that knows which adapter serves which port; handlers call it once per cold start.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from switchyard.aws import clients
from switchyard.aws.secrets import SecretReader
from switchyard.aws.sqs import SqsDeadLetters, SqsQueues
from switchyard.ingest import Authenticator, IngestService
from switchyard.settings import IngestSettings, WorkerSettings
from switchyard.signatures import SharedTokenAuthenticator, StandardWebhookAuthenticator

# longer than DLQ retention (14 d) + queue retention (4 d): redrives stay deduplicated
IDEMPOTENCY_TTL_SECONDS = 21 * 24 * 3600


def build_ingest(settings: IngestSettings) -> IngestService:
    secrets = SecretReader(clients.client("secretsmanager"))

    authenticators: dict[str, tuple[tuple[str, ...], Authenticator]] = {}

    def authenticator_for(source: str) -> Authenticator:
        config = settings.sources[source]
        shared_token = config.signature == "shared-token"
        secret = secrets.get_json(config.secret_arn)
        current = tuple(secret.get("tokens" if shared_token else "signing_secrets") or ())
        cached = authenticators.get(source)
        if cached is None or cached[0] != current:  # first use, or the secret was rotated
            built = SharedTokenAuthenticator(current) if shared_token else StandardWebhookAuthenticator(current)
            cached = authenticators[source] = (current, built)
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


class ConnectionBoundTarget:
    """Builds the target from its connection secret, and rebuilds it when the secret changes
    (key rotation, a new base URL) without a redeploy."""

    def __init__(self, secrets: SecretReader, secret_arn: str, factory: Any) -> None:
        self._secrets = secrets
        self._secret_arn = secret_arn
        self._factory = factory
        self._current: tuple[dict[str, Any], Any] | None = None

    def deliver(self, event: Any) -> Any:
        value = self._secrets.get_json(self._secret_arn)
        if self._current is None or self._current[0] != value:
            self._current = (value, self._factory(value))
        return self._current[1].deliver(event)


def build_worker(settings: WorkerSettings, *, metrics: Any = None, logger: Any = None) -> WorkerApp:
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    from switchyard.catalog import load_catalog
    from switchyard.echoes import DynamoEchoLedger, EchoSuppressingTarget
    from switchyard.entity_state import DynamoEntityState
    from switchyard.worker import FlowWorker

    flow = load_catalog().flows[settings.flow]
    dynamodb = clients.client("dynamodb")
    state = DynamoEntityState(dynamodb, settings.idempotency_table)
    echoes = DynamoEchoLedger(dynamodb, settings.idempotency_table)
    target = EchoSuppressingTarget(
        ConnectionBoundTarget(SecretReader(clients.client("secretsmanager")), settings.connection_secret_arn,
                              _target_factory(flow.target, flow.mapping, state, echoes)),
        echoes,
    )

    config = IdempotencyConfig(
        expires_after_seconds=IDEMPOTENCY_TTL_SECONDS,
        response_hook=lambda response, _record: {**response, "duplicate": True},
    )
    persistence = DynamoDBPersistenceLayer(
        table_name=settings.idempotency_table, key_attr="id", expiry_attr="expiration"
    )
    queues = SqsQueues(clients.client("sqs"))
    worker = FlowWorker(
        flow=flow,
        target=target,
        dead_letters=SqsDeadLetters(clients.client("sqs"), settings.dlq_url),
        delay=lambda receipt, seconds: queues.delay(settings.queue_url, receipt, seconds),
        max_receive_count=settings.max_receive_count,
        make_idempotent=idempotent_function(
            data_keyword_argument="key", config=config, persistence_store=persistence
        ),
        metrics=metrics,
        logger=logger,
    )
    return WorkerApp(worker=worker, idempotency_config=config)


def _target_factory(system: str, mapping_file: str, state: Any, echoes: Any) -> Any:
    """connection secret -> the flow's target; the mapping is loaded once, here (cold start)."""
    if system == "streak":
        from switchyard.connectors.streak import StreakClient, StreakConnection
        from switchyard.mapping.streak_deals import load_deal_mapping
        from switchyard.targets.streak_deals import StreakDealTarget

        deals = load_deal_mapping(mapping_file)
        return lambda secret: StreakDealTarget(deals, StreakClient(StreakConnection.from_secret(secret)), state,
                                               echoes)
    if system == "clarity":
        from switchyard.connectors.clarity import ClarityClient, ClarityConnection
        from switchyard.mapping.clarity_sync import load_clarity_sync_mapping
        from switchyard.targets.clarity import ClarityTarget

        sync = load_clarity_sync_mapping(mapping_file)
        return lambda secret: ClarityTarget(sync, ClarityClient(ClarityConnection.from_secret(secret)), state,
                                            echoes)
    raise ValueError(f"no target for system {system!r}")
