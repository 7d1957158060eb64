"""One Secrets Manager secret per webhook source and per connection, declared by the catalog.

The template only holds placeholders without secret material; operators put the real values after
deploy (see ``docs/infrastructure.md``). CloudFormation leaves a secret's value alone on later
deploys as long as the placeholder in the template does not change, so never edit these templates
casually: a changed placeholder would overwrite the live value on the next deploy.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import RemovalPolicy, SecretValue
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct
from switchyard import registry
from switchyard.catalog import Catalog
from switchyard.signatures import CORE_SCHEMES

from infra.metadata import annotate
from infra.nag import acknowledge


def source_secret_placeholder(signature: str) -> dict[str, Any]:
    """An empty list of current values: every webhook from the source is rejected (401) until a secret is put."""
    return {registry.signature_schemes(CORE_SCHEMES)[signature].secret_key: []}


def connection_secret_placeholder(system: str) -> dict[str, Any]:
    """The registered system's secret template; ``base_url`` can point a connection at any HTTP server."""
    return dict(registry.system(system).connection.secret_template)


class IntegrationSecrets(Construct):
    """``sources[name]`` and ``connections[name]``: one secret each, generated names."""

    def __init__(self, scope: Construct, construct_id: str, *, catalog: Catalog, removal_policy: RemovalPolicy):
        super().__init__(scope, construct_id)
        self._removal_policy = removal_policy
        self.sources = {
            name: self._secret(
                f"Source-{name}",
                tag=f"source:{name}",
                description=f"Switchyard: {name} webhook signing secrets ({source.signature})",
                placeholder=source_secret_placeholder(str(source.signature)),
            )
            for name, source in catalog.webhook_sources.items()
        }
        self.connections = {
            name: self._secret(
                f"Connection-{name}",
                tag=f"connection:{name}",
                description=f"Switchyard: {connection.system} connection {name!r} (base URL and credentials)",
                placeholder=connection_secret_placeholder(connection.system),
            )
            for name, connection in catalog.connections.items()
        }
        acknowledge(
            self,
            "SMG4",
            "Webhook signing secrets are issued by the source system and API keys by the target; neither "
            "offers an API a rotation Lambda could call. Operators rotate by hand; "
            "sources accept two signing secrets at once, so rotation needs no downtime.",
        )

    def _secret(self, construct_id: str, *, tag: str, description: str, placeholder: dict[str, Any]):
        secret = secretsmanager.Secret(
            self,
            construct_id,
            description=description,
            # A placeholder without secret material, so plain text in the template is fine.
            secret_string_value=SecretValue.unsafe_plain_text(json.dumps(placeholder)),
            removal_policy=self._removal_policy,
        )
        annotate(secret, secret=tag)
        return secret
