"""Which stack a command talks to: a deployed one (profile, region, stack or stage) or ``make dev``'s.

``make dev`` writes where its AWS endpoint listens to ``.local-stack/endpoint.json``; ``--local`` reads it, so
``switchyard --local`` works from the checkout without copying a port around. Everything else is boto3's
usual chain (``AWS_PROFILE``, ``AWS_REGION``, ...), with ``SWITCHYARD_STACK`` / ``SWITCHYARD_ENDPOINT_URL``
for scripts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from switchyard_cli.errors import CliError, ExitCode
from switchyard_cli.stackinfo import StackResources

DEFAULT_STAGE = "dev"
LOCAL_ENDPOINT_FILE = Path(".local-stack") / "endpoint.json"
# what make dev's moto accepts; any value works, but boto3 wants some before it sends anything
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def stack_name(stage: str) -> str:
    """The stack ``app.py`` deploys for a stage."""
    return f"Switchyard-{stage}"


def write_local_endpoint(path: Path, *, endpoint_url: str, region: str, stack: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"endpoint_url": endpoint_url, "region": region, "stack": stack}, indent=2) + "\n")


@dataclass
class Target:
    stack: str | None = None
    stage: str | None = None
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    local: bool = False
    local_file: Path = LOCAL_ENDPOINT_FILE
    _session: Any = field(default=None, repr=False)
    _resources: StackResources | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.local:
            try:
                written = json.loads(self.local_file.read_text())
            except FileNotFoundError:
                raise CliError(f"no local stack is running here ({self.local_file} is missing): start one with "
                               "`make dev`", ExitCode.UNREACHABLE) from None
            except ValueError:
                raise CliError(f"{self.local_file} is not JSON: restart `make dev`", ExitCode.CONFIGURATION) from None
            self.endpoint_url = self.endpoint_url or written["endpoint_url"]
            self.region = self.region or written["region"]
            self.stack = self.stack or written["stack"]

    @property
    def stack_name(self) -> str:
        return self.stack or stack_name(self.stage or DEFAULT_STAGE)

    @property
    def where(self) -> str:
        return f"{self.stack_name} at {self.endpoint_url}" if self.endpoint_url else self.stack_name

    def session(self) -> Any:
        if self._session is None:
            import boto3
            import botocore.exceptions

            credentials = LOCAL_CREDENTIALS if self.local else {}
            try:
                self._session = boto3.session.Session(profile_name=self.profile, region_name=self.region,
                                                      **credentials)
            except botocore.exceptions.ProfileNotFound as exc:
                raise CliError(str(exc), ExitCode.CONFIGURATION) from None
        return self._session

    def client(self, service: str) -> Any:
        return self.session().client(service, endpoint_url=self.endpoint_url)

    def resources(self) -> StackResources:
        if self._resources is None:
            self._resources = StackResources.read(self.client("cloudformation"), self.stack_name)
        return self._resources


def target_from_environment(**given: Any) -> Target:
    """A target from the options given, the rest from ``SWITCHYARD_*`` variables."""
    given.setdefault("stack", None)
    given["stack"] = given["stack"] or os.environ.get("SWITCHYARD_STACK") or None
    given["endpoint_url"] = given.get("endpoint_url") or os.environ.get("SWITCHYARD_ENDPOINT_URL") or None
    return Target(**given)
