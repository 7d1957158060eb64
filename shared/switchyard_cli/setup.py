"""``switchyard setup``: which of a stack's secrets are still empty, and filling those Switchyard can fill.

Every secret is a JSON object the stack creates with empty values (infra/constructs/secrets.py). A secret is
``missing`` while all its values but ``base_url`` are empty (every webhook of a source is rejected with 401,
a connection cannot call its target), ``partial`` while some are (a connection may use only one of two
credentials, e.g. an API key or OAuth client credentials), ``set`` otherwise. Nothing here names a system:
what a secret holds is read from the secret.

Switchyard can fill two kinds itself, read from the key that holds them: ``signing_secrets`` (Standard
Webhooks: ``whsec_`` + base64 of 32 random bytes, given to the source afterwards) and ``tokens`` (a shared
token the sender echoes back, registered with the sender afterwards). Everything else comes from the
vendor and is asked for. A value already there is never replaced: setup can run again at any time.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

GENERATED = {
    "signing_secrets": lambda: "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
    "tokens": lambda: secrets.token_hex(32),
}
NOT_A_CREDENTIAL = frozenset({"base_url"})  # every connection has one, with a default


def empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


@dataclass
class SecretState:
    tag: str  # "source:nopcommerce", "connection:streak"
    arn: str
    value: dict[str, Any]
    empty_keys: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        credentials = [key for key in self.value if key not in NOT_A_CREDENTIAL]
        if not credentials or all(key in self.empty_keys for key in credentials):
            return "missing"
        return "partial" if self.empty_keys else "set"

    def report(self) -> dict[str, Any]:
        return {"secret": self.tag, "state": self.state, "empty": self.empty_keys, "arn": self.arn}


def inspect_secret(tag: str, arn: str, raw: str) -> SecretState:
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        return SecretState(tag, arn, {}, ["(not a JSON object)"])
    return SecretState(tag, arn, value, [key for key, item in value.items() if empty(item)])


def read_states(secretsmanager: Any, arns: dict[str, str]) -> list[SecretState]:
    states = []
    for tag, arn in sorted(arns.items()):
        raw = secretsmanager.get_secret_value(SecretId=arn).get("SecretString") or ""
        states.append(inspect_secret(tag, arn, raw))
    return states


def generate(state: SecretState) -> dict[str, str]:
    """The values Switchyard makes for the secret's empty keys it can make (``{key: value}``)."""
    return {key: GENERATED[key]() for key in state.empty_keys if key in GENERATED}


def with_values(state: SecretState, values: dict[str, Any]) -> dict[str, Any]:
    """The secret with ``values`` put into its empty keys (lists get a one-item list), every other key kept."""
    document = dict(state.value)
    for key, value in values.items():
        if key in state.empty_keys and not empty(value):
            document[key] = [value] if isinstance(state.value.get(key), list) else value
    return document
