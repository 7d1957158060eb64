"""CloudFormation metadata that lets tools find Switchyard's resources in a synthesized template.

The embedded local stack (and the infra tests) read these keys instead of keeping a second list of
resources by hand:

- ``switchyard:code``: a Lambda function's code folder, relative to the repository root
  (``functions/ingest``, ``functions/flow_worker``).
- ``switchyard:role``: ``ingest`` | ``worker`` | ``steps`` | ``state-machine`` | ``queue`` | ``dlq`` |
  ``idempotency-table`` | ``shared-layer`` | ``poller`` | ``archive``.
- ``switchyard:flow``: the flow name on a flow's worker, queue, DLQ, step function and state machine.
- ``switchyard:secret``: ``source:<name>`` or ``connection:<name>`` on each secret.
"""

from __future__ import annotations

from typing import Literal

from aws_cdk import CfnResource
from constructs import IConstruct

CODE = "switchyard:code"
ROLE = "switchyard:role"
FLOW = "switchyard:flow"
SECRET = "switchyard:secret"

Role = Literal["ingest", "worker", "steps", "state-machine", "queue", "dlq", "idempotency-table", "shared-layer",
               "execution-ended", "poller", "archive"]


def annotate(
    construct: IConstruct,
    *,
    role: Role | None = None,
    flow: str | None = None,
    code: str | None = None,
    secret: str | None = None,
) -> None:
    """Write the given keys into the metadata of ``construct``'s CloudFormation resource."""
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to annotate")
    for key, value in ((ROLE, role), (FLOW, flow), (CODE, code), (SECRET, secret)):
        if value is not None:
            resource.add_metadata(key, value)
