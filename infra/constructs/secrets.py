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
from switchyard.catalog import Catalog

from infra.metadata import annotate
from infra.nag import acknowledge

# Empty lists: every webhook from the source is rejected (401) until a secret is put.
SOURCE_SECRET_PLACEHOLDERS: dict[str, dict[str, Any]] = {
    "standard-webhooks": {"signing_secrets": []},
    "shared-token": {"tokens": []},
    "intuit-signature": {"verifier_tokens": []},
}
# Per target system; ``base_url`` can point a connection at any HTTP server (a sandbox, a proxy).
CONNECTION_SECRET_PLACEHOLDERS: dict[str, dict[str, Any]] = {
    "streak": {"base_url": "https://api.streak.com", "api_key": "", "team_key": "", "pipeline_key": ""},
    # API key, or OAuth2 client credentials (token_url defaults to <base_url>/oauth/token)
    "clarity": {"base_url": "", "api_key": "", "client_id": "", "client_secret": "", "token_url": ""},
    # OAuth2 authorization code: the operator connects the company once and puts its first refresh token;
    # Switchyard then keeps the rotated one here (switchyard.tokens)
    "quickbooks": {"base_url": "https://quickbooks.api.intuit.com", "client_id": "", "client_secret": "",
                   "realm_id": "", "refresh_token": ""},
    # the Web API backend plugin's login (a customer in a role with "Access Web API backend")
    "nopcommerce": {"base_url": "", "email": "", "password": ""},
    # a connected (or external client) app with the client-credentials flow and a Run As user; base_url is
    # the org's My Domain URL (the flow is refused on login.salesforce.com); api_version optional (v62.0)
    "salesforce": {"base_url": "", "client_id": "", "client_secret": ""},
}


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
                placeholder=SOURCE_SECRET_PLACEHOLDERS[source.signature or ""],
            )
            for name, source in catalog.webhook_sources.items()
        }
        self.connections = {
            name: self._secret(
                f"Connection-{name}",
                tag=f"connection:{name}",
                description=f"Switchyard: {connection.system} connection {name!r} (base URL and credentials)",
                placeholder=CONNECTION_SECRET_PLACEHOLDERS[connection.system],
            )
            for name, connection in catalog.connections.items()
        }
        acknowledge(
            self,
            "SMG4",
            "Webhook signing secrets are issued by the source system and API keys by the target (e.g. "
            "Streak); neither offers an API a rotation Lambda could call. Operators rotate by hand; "
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
