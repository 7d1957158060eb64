"""The ``switchyard`` command against the local stack, over its AWS endpoint (what ``make dev`` serves).

One stack for the module; the CLI runs in this process but reaches the stack only through the HTTP endpoint
(``--local`` reads it from ``.local-stack/endpoint.json``), as an operator's terminal would.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from switchyard.catalog import load_catalog
from switchyard_cli.errors import ExitCode
from switchyard_cli.main import main
from switchyard_local.devmode import banner
from switchyard_local.stack import REGION, LocalStack
from switchyard_local.webhooks import post_webhook, sample, signed_headers

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-own")]
FLOW = "nopcommerce-to-streak"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack(own_stack: LocalStack) -> LocalStack:
    return own_stack  # its letters and drops are counted: a fresh stack


@pytest.fixture
def http(stack: LocalStack):
    stack.streak.reset()
    with httpx.Client(transport=httpx.WSGITransport(app=stack.front_door), base_url="http://local") as client:
        yield client
    assert stack.drain(timeout=60), "flow queues did not drain"


def place(stack: LocalStack, http: httpx.Client, number: int) -> str:
    event = json.loads(sample("nop_order_b2b"))
    event["data"]["Order"].update(Id=number, CustomOrderNumber=str(number), OrderGuid=str(uuid.UUID(int=number)))
    body = json.dumps(event).encode()
    status, answer = post_webhook(http, "nopcommerce", body, signed_headers(stack.signing_secret, body))
    assert status == 202
    return str(answer["event_id"])


def boxes_for(stack: LocalStack, number: int) -> list[dict[str, Any]]:
    return [b for b in stack.streak.snapshot()["boxes"] if b["fields"].get("Order number") == str(number)]


def test_status_lists_every_deployed_flow_and_connection(cli) -> None:
    shown, _ = cli("status", "--json")

    assert shown["stack"] == "Switchyard-dev"
    assert {row["flow"] for row in shown["flows"]} == set(load_catalog().flows)
    assert all({"waiting", "in_flight", "delayed", "dead_letters"} <= set(row) for row in shown["flows"])
    assert {state["connection"] for state in shown["connections"]} == set(load_catalog().connections)


def test_broken_target_letters_show_their_order_then_redrive_delivers_each_once(stack, http, cli) -> None:
    # Given Streak refuses two orders (a target broken on purpose)
    stack.streak.faults.fail_next(1, status=400)
    first = place(stack, http, 7101)
    assert stack.drain(timeout=30)
    stack.streak.faults.fail_next(1, status=400)
    place(stack, http, 7102)
    assert stack.drain(timeout=30)

    # Then status and dlq list show each letter with its order, reason, target answer and attempts
    status, _ = cli("status", FLOW, "--json")
    assert status["flows"][0]["dead_letters_by_reason"] == {"target_rejected": 2}
    assert [letter["order"] for letter in status["recent_failures"]] == ["7102", "7101"]
    letters, summary = cli("dlq", "list", FLOW, "--json")
    assert [(letter["order"], letter["reason"], letter["target_status"], letter["attempts"]) for letter in letters] \
        == [("7101", "target_rejected", 400, 1), ("7102", "target_rejected", 400, 1)]
    assert letters[0]["event_id"] == first and letters[0]["target_response"]["success"] is False
    assert "2 dead letter(s) in nopcommerce-to-streak of Switchyard-dev: 2 target_rejected" in summary
    table, _ = cli("dlq", "list", FLOW)
    assert "7101" in table and "target_rejected" in table
    # and the selection narrows them by order, reason and time
    assert [letter["order"] for letter in cli("dlq", "list", FLOW, "--order", "7102", "--json")[0]] == ["7102"]
    assert cli("dlq", "list", FLOW, "--reason", "box_not_found", "--json")[0] == []
    assert cli("dlq", "list", FLOW, "--since", "2999-01-01", "--json")[0] == []
    assert len(cli("dlq", "list", FLOW, "--since", "1h", "--json")[0]) == 2
    shown, _ = cli("dlq", "show", letters[0]["id"][:8], "--json")
    assert shown["event"]["Order"]["CustomOrderNumber"] == "7101"

    # When an operator redrives one order's letter without a terminal to confirm: nothing moves
    _, said = cli("dlq", "redrive", FLOW, "--order", "7101", code=ExitCode.USAGE)
    assert "give --yes" in said and len(cli("dlq", "list", FLOW, "--json")[0]) == 2
    # then with --yes: that letter only, and again (a careless operator): nothing more
    outcomes, said = cli("dlq", "redrive", FLOW, "--order", "7101", "--yes", "--json")
    assert [(o["order"], o["done"]) for o in outcomes] == [("7101", "redriven")] and "1 redriven" in said
    assert stack.drain(timeout=30)
    assert cli("dlq", "redrive", FLOW, "--order", "7101", "--yes", "--json")[0] == []
    # and discards the other (booked by hand)
    outcomes, _ = cli("dlq", "discard", FLOW, "--id", letters[1]["id"], "--yes", "--json")
    assert [(o["order"], o["done"]) for o in outcomes] == [("7102", "discarded")]

    # Then the redriven order exists once, the discarded one not at all, and the DLQ is empty
    assert stack.drain(timeout=30)
    assert len(boxes_for(stack, 7101)) == 1 and boxes_for(stack, 7102) == []
    assert cli("dlq", "list", FLOW, "--json")[0] == []
    # and trace tells each order's story: dead-lettered and why, then delivered once (with the box's key)
    story, said = cli("trace", "7101", "--json")
    streak = [d for d in story["deliveries"] if d["flow"] == FLOW]
    assert [(d["outcome"], d["reason"]) for d in streak] == [("dead_lettered", "target_rejected"), ("created", None)]
    assert streak[1]["detail"]["box_key"] == boxes_for(stack, 7101)[0]["key"]
    assert [d["flow"] for d in story["dead_letters"]].count(FLOW) == 0 and "order 7101:" in said
    story, _ = cli("trace", "7102", "--json")
    assert [d["outcome"] for d in story["deliveries"] if d["flow"] == FLOW] == ["dead_lettered"]
    _, said = cli("trace", "no-such-order", code=ExitCode.PROBLEM)
    assert "no trace of order 'no-such-order'" in said
    table, _ = cli("trace", "7101")
    assert "dead_lettered" in table and "target_rejected" in table


def test_connection_override_through_the_endpoint_reaches_what_functions_read(stack, endpoint) -> None:
    # Given the documented put-secret-value, sent to make dev's endpoint as the aws CLI would
    aws = boto3.session.Session(aws_access_key_id="any", aws_secret_access_key="any", region_name=REGION)
    cfn = aws.client("cloudformation", endpoint_url=endpoint["url"])
    outputs = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName="Switchyard-dev")[
        "Stacks"][0].get("Outputs", [])}
    secret_arn = outputs["ConnectionSecretArnStreak"]
    secrets = aws.client("secretsmanager", endpoint_url=endpoint["url"])
    before = json.loads(secrets.get_secret_value(SecretId=secret_arn)["SecretString"])
    try:
        secrets.put_secret_value(SecretId=secret_arn, SecretString=json.dumps(
            {**before, "base_url": "http://127.0.0.1:9/recording-proxy"}))
        # Then the stack's functions (in-process moto) read the new base URL
        seen = json.loads(stack.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"])
        assert seen["base_url"] == "http://127.0.0.1:9/recording-proxy"
    finally:
        secrets.put_secret_value(SecretId=secret_arn, SecretString=json.dumps(before))


def test_connection_status_and_drops_over_the_endpoint(cli) -> None:
    states, _ = cli("connection", "status", "--json")
    assert {s["connection"]: s["status"] for s in states} == {name: "connected" for name in load_catalog().connections}
    drops, said = cli("drops", "clarity-to-streak", "--json")
    assert drops == [] and "0 dropped event(s) in clarity-to-streak" in said


# --- errors are one line with an exit code that means something -----------------------------------------

def test_a_stopped_stack_is_one_line_and_exit_4(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no make dev running here
    _, said = cli("status", code=ExitCode.UNREACHABLE)
    assert said.strip().count("\n") == 0 and "make dev" in said and "Traceback" not in said
    _, said = cli("status", "--endpoint-url", "http://127.0.0.1:9", "--region", REGION, local=False,
                  code=ExitCode.UNREACHABLE)
    assert said.startswith("error: cannot reach") and said.strip().count("\n") == 0


def test_an_unknown_stack_or_flow_names_what_to_give(cli) -> None:
    _, said = cli("dlq", "list", "--stack", "Switchyard-nope", code=ExitCode.CONFIGURATION)
    assert "Switchyard-nope" in said and said.strip().count("\n") == 0
    _, said = cli("dlq", "list", "no-such-flow", code=ExitCode.USAGE)
    assert FLOW in said


def test_missing_region_is_one_line_and_exit_3(monkeypatch, capsys) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "SWITCHYARD_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    assert main(["status", "--stack", "Switchyard-dev"]) == ExitCode.CONFIGURATION
    assert capsys.readouterr().err.startswith("error: no AWS region")


def test_dev_banner_matches_docs_local_stack(stack, endpoint) -> None:
    printed = banner(stack, aws_endpoint=endpoint["url"], log=Path(".local-stack/functions.log"))
    documented = (ROOT / "docs" / "local-stack.md").read_text().split("$ make dev\n", 1)[1].split("```", 1)[0]
    labels = [re.split(r"\s{2,}", line.strip())[0] for line in documented.splitlines()
              if line.startswith("  ") and not line.startswith("   ")]
    assert labels, "docs/local-stack.md shows no make dev output"
    for label in labels:
        assert f"\n  {label} " in printed, f"docs show {label!r}, make dev does not print it"
    printed_labels = [re.split(r"\s{2,}", line.strip())[0] for line in printed.split("\n\n")[0].splitlines()[1:]
                      if not line.startswith("   ")]
    assert printed_labels == labels, "make dev prints lines docs/local-stack.md does not show"
    assert printed.splitlines()[0] == documented.splitlines()[0]


def test_setup_check_reports_missing_secrets_and_setup_fills_what_it_can(stack, endpoint, cli) -> None:
    aws = boto3.session.Session(aws_access_key_id="any", aws_secret_access_key="any", region_name=REGION)
    secrets = aws.client("secretsmanager", endpoint_url=endpoint["url"])
    shown, _ = cli("setup", "--check", "--json")
    arns = {entry["secret"]: entry["arn"] for entry in shown["secrets"]}
    assert set(arns) == {f"source:{name}" for name in load_catalog().webhook_sources} | {
        f"connection:{name}" for name in load_catalog().connections}
    assert all(entry["state"] != "missing" for entry in shown["secrets"])  # the local stack filled every one
    source, connection = "source:nopcommerce", "connection:streak"
    before = {tag: secrets.get_secret_value(SecretId=arns[tag])["SecretString"] for tag in (source, connection)}
    try:
        # Given a stack as a first deploy leaves it: a source's signing secrets and a connection's keys empty
        secrets.put_secret_value(SecretId=arns[source], SecretString='{"signing_secrets": []}')
        secrets.put_secret_value(SecretId=arns[connection], SecretString=json.dumps(
            {"base_url": "https://api.streak.com", "api_key": "", "team_key": "", "pipeline_key": ""}))
        # Then --check names both and exits 1
        shown, said = cli("setup", "dev", "--check", "--json", code=ExitCode.PROBLEM)
        states = {entry["secret"]: entry["state"] for entry in shown["secrets"]}
        assert (states[source], states[connection]) == ("missing", "missing")
        assert "2 of" in said and source in said and connection in said
        # When setup runs (no terminal to ask for Streak's keys): it makes the signing secret, asks nothing
        shown, said = cli("setup", "dev", "--json", code=ExitCode.PROBLEM)
        (filled,) = shown["filled"]
        assert filled["secret"] == source and filled["generated"]["signing_secrets"].startswith("whsec_")
        put = json.loads(secrets.get_secret_value(SecretId=arns[source])["SecretString"])
        assert put == {"signing_secrets": [filled["generated"]["signing_secrets"]]}
        assert "1 of" in said and connection in said
        # and run again, changes nothing it made
        shown, _ = cli("setup", "dev", "--json", code=ExitCode.PROBLEM)
        assert shown["filled"] == []
        assert json.loads(secrets.get_secret_value(SecretId=arns[source])["SecretString"]) == put
    finally:
        for tag, value in before.items():
            secrets.put_secret_value(SecretId=arns[tag], SecretString=value)
