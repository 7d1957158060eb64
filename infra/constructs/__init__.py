"""The constructs that model Switchyard: ingress, one pipeline per flow, monitoring, secrets."""

from infra.constructs.flow import FlowPipeline
from infra.constructs.ingress import WebhookIngress
from infra.constructs.monitoring import Monitoring
from infra.constructs.secrets import IntegrationSecrets

__all__ = ["FlowPipeline", "IntegrationSecrets", "Monitoring", "WebhookIngress"]
