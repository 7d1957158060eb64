"""cdk-nag (3.x, a CDK policy-validation plugin) and the one way this app acknowledges a finding.

Any finding that is neither fixed nor acknowledged fails synth. Acknowledge next to the construct
that causes the finding, with the real reason; ``docs/infrastructure.md`` lists every one.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

PACK = "AwsSolutions"


def add_compliance_checks(app: App) -> None:
    """Run cdk-nag's AwsSolutions rules over every stack of ``app`` at synth."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge ``rule`` (e.g. ``APIG4``, ``IAM5[Resource::*]``) for ``scope`` and its children."""
    Validations.of(scope).acknowledge(Acknowledgment(id=f"{PACK}::{PACK}-{rule}", reason=reason))
