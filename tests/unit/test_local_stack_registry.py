"""The local stack fills every secret the CDK app declares from the registry: a registered system without a
sandbox (or a signature scheme without a local credential) fails here, not halfway through a stack start."""

from __future__ import annotations

from switchyard import registry
from switchyard.signatures import CORE_SCHEMES
from switchyard_local.stack import LocalStack


def test_every_registered_system_has_a_sandbox_connection_secret():
    assert set(LocalStack()._connection_secrets()) == set(registry.systems())


def test_every_signature_scheme_has_a_local_credential():
    assert set(LocalStack()._webhook_credentials()) == set(registry.signature_schemes(CORE_SCHEMES))
