"""``switchyard setup``: what counts as a missing secret, and what Switchyard fills itself."""

from __future__ import annotations

import base64
import json

from switchyard.signatures import sign
from switchyard_cli.setup import generate, inspect_secret, with_values


def test_a_placeholder_is_missing_a_half_filled_connection_partial_a_filled_one_set() -> None:
    placeholder = {"base_url": "https://api.example", "api_key": "", "team_key": ""}
    assert inspect_secret("connection:crm", "arn", json.dumps(placeholder)).state == "missing"
    assert inspect_secret("connection:crm", "arn", json.dumps({**placeholder, "api_key": "k"})).state == "partial"
    assert inspect_secret("connection:crm", "arn", json.dumps({**placeholder, "api_key": "k", "team_key": "t"})
                          ).state == "set"
    assert inspect_secret("source:shop", "arn", '{"signing_secrets": []}').state == "missing"
    assert inspect_secret("source:shop", "arn", "not json").state == "missing"


def test_setup_generates_a_usable_signing_secret_and_a_token_and_nothing_it_cannot_make() -> None:
    source = inspect_secret("source:shop", "arn", '{"signing_secrets": []}')
    (secret,) = with_values(source, generate(source))["signing_secrets"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert sign(secret, "msg_1", 1_800_000_000, b"{}")["webhook-signature"].startswith("v1,")
    token = inspect_secret("source:crm", "arn", '{"tokens": []}')
    assert len(with_values(token, generate(token))["tokens"][0]) == 64
    assert generate(inspect_secret("source:books", "arn", '{"verifier_tokens": []}')) == {}
    # two runs make two different secrets: nothing predictable
    assert generate(source) != generate(source)


def test_setup_never_replaces_a_value_already_there() -> None:
    state = inspect_secret("connection:crm", "arn", json.dumps({"api_key": "kept", "team_key": ""}))
    assert with_values(state, {"api_key": "new", "team_key": "t"}) == {"api_key": "kept", "team_key": "t"}
