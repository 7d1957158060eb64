"""``switchyard``: the operator's and developer's command line.

    switchyard dry-run FLOW EVENT.json [--item ITEM.json]   what an event becomes, without calling anyone
    switchyard dlq list FLOW [--stack NAME]    dead letters of a flow, with their reasons
    switchyard dlq redrive FLOW [--stack NAME] send them back through the flow (idempotent)
    switchyard drops FLOW [--stack NAME]       events accepted but not applied (stale, not master, ...), with reasons
    switchyard send URL EVENT.json --secret S  post a Standard Webhooks signed event
    switchyard connection status [--stack NAME]                  which connections wait for a reconnect
    switchyard connection reconnect NAME --refresh-token T | --auth-code C --redirect-uri U [--stack NAME]
                                               store a new consent's refresh token, let waiting events drain
    switchyard local demo | local up           the embedded local stack
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any


def _dry_run(args: argparse.Namespace) -> int:
    """What each event of a delivery becomes. The body is judged first exactly as ingest judges it
    (strict JSON, the source's schema, the limits), and the answer ingest would give is printed."""
    from switchyard.catalog import load_catalog
    from switchyard.errors import DeliveryError, SwitchyardError, WebhookRejectedError
    from switchyard.ingest import split_delivery
    from switchyard.mapping import dry_run
    from switchyard.webhook_json import decode

    catalog = load_catalog()
    flow = catalog.flows.get(args.flow)
    if flow is None:
        print(f"unknown flow {args.flow!r}; flows: {', '.join(catalog.flows)}", file=sys.stderr)
        return 2
    if flow.mapping is None:  # e.g. stock levels: nothing to plan without reading the target
        print(f"flow {args.flow!r} has no mapping document to dry-run (docs/quickbooks-pair.md says what it does)",
              file=sys.stderr)
        return 2
    delivery_format = catalog.sources[flow.source].format
    if delivery_format == "object-array" and not args.event_type:  # Streak: the event type is in its URL
        print("this flow's source posts bare objects: give --event-type", file=sys.stderr)
        return 2
    body = Path(args.event).read_bytes()
    try:
        events, _ignored = split_delivery(flow.source, delivery_format, decode(body), event_type=args.event_type or "",
                                          routes={event_type: {flow.name: ""} for event_type in flow.events},
                                          body=body.decode("utf-8"))
    except WebhookRejectedError as exc:
        print(json.dumps({"status": exc.status_code, **exc.body()}, indent=2, ensure_ascii=False))
        return 1
    item = json.loads(Path(args.item).read_text(), parse_float=Decimal) if args.item else None
    shown = []
    for event in events:
        data = json.loads(event.body, parse_float=Decimal)["data"]  # as the worker reads it: money exact
        if item is not None:  # what the worker would read from the target's API (QuickBooks' Item)
            data = {**data, "Item": item}
        try:
            action, plan = dry_run(flow.target, flow.mapping_document, event.event_type, data, source=flow.source)
        except (DeliveryError, SwitchyardError) as exc:
            print(json.dumps({"error": getattr(exc, "reason", "mapping_error"), "message": str(exc)}, indent=2))
            return 1
        shown.append({"flow": args.flow, "action": action,
                      "plan": dataclasses.asdict(plan) if dataclasses.is_dataclass(plan) else plan})
    print(json.dumps(shown[0] if len(shown) == 1 else shown, indent=2, ensure_ascii=False, default=str))
    return 0


def _stack_queues(args: argparse.Namespace) -> tuple[Any, str, str]:
    import boto3

    from switchyard_local.stackinfo import flow_queue_urls

    session = boto3.session.Session(region_name=args.region)
    cfn = session.client("cloudformation", endpoint_url=args.endpoint_url)
    queue_url, dlq_url = flow_queue_urls(cfn, args.stack, args.flow)
    return session.client("sqs", endpoint_url=args.endpoint_url), queue_url, dlq_url


def _dlq(args: argparse.Namespace) -> int:
    from switchyard_local.operations import list_dead_letters, redrive

    sqs, queue_url, dlq_url = _stack_queues(args)
    if args.action == "list":
        letters = list_dead_letters(sqs, dlq_url)
        print(json.dumps(letters, indent=2, default=str))
        print(f"{len(letters)} dead letter(s) in {args.flow}", file=sys.stderr)
    else:
        moved = redrive(sqs, dlq_url, queue_url, limit=args.limit)
        print(f"redrove {moved} message(s) from {args.flow}'s DLQ", file=sys.stderr)
    return 0


def _connection(args: argparse.Namespace) -> int:
    import boto3
    from switchyard.catalog import load_catalog

    from switchyard_local import connections
    from switchyard_local.stackinfo import tagged_resource

    catalog = load_catalog()
    session = boto3.session.Session(region_name=args.region)
    cfn = session.client("cloudformation", endpoint_url=args.endpoint_url)
    dynamodb = session.client("dynamodb", endpoint_url=args.endpoint_url)
    table = tagged_resource(cfn, args.stack, role="idempotency-table")
    if args.action == "status":
        print(json.dumps(connections.status(dynamodb, table=table, connections=list(catalog.connections)), indent=2))
        return 0
    if args.name not in catalog.connections:
        print(f"unknown connection {args.name!r}; connections: {', '.join(catalog.connections)}", file=sys.stderr)
        return 2
    secrets = session.client("secretsmanager", endpoint_url=args.endpoint_url)
    secret_id = tagged_resource(cfn, args.stack, secret=f"connection:{args.name}")
    refresh_token = sys.stdin.readline().strip() if args.refresh_token == "-" else args.refresh_token
    realm_id = args.realm_id
    if args.auth_code:
        if not args.redirect_uri:
            print("--auth-code needs the --redirect-uri the consent used", file=sys.stderr)
            return 2
        secret = json.loads(secrets.get_secret_value(SecretId=secret_id)["SecretString"])
        tokens = connections.exchange_authorization_code(secret, args.auth_code, args.redirect_uri,
                                                         system=catalog.connections[args.name].system)
        refresh_token = tokens["refresh_token"]
    if not refresh_token:
        print("give --refresh-token, or --auth-code and --redirect-uri", file=sys.stderr)
        return 2
    state = connections.reconnect(secrets, dynamodb, table=table, secret_id=secret_id, connection=args.name,
                                  refresh_token=refresh_token, realm_id=realm_id)
    print(f"connection {args.name} is {state.status.value}: waiting events drain within 10 minutes", file=sys.stderr)
    return 0


def _drops(args: argparse.Namespace) -> int:
    import boto3
    from switchyard.drops import DynamoDropLog

    from switchyard_local.stackinfo import idempotency_table

    session = boto3.session.Session(region_name=args.region)
    table = idempotency_table(session.client("cloudformation", endpoint_url=args.endpoint_url), args.stack)
    drops = DynamoDropLog(session.client("dynamodb", endpoint_url=args.endpoint_url), table).list(args.flow)
    print(json.dumps([d.to_dict() for d in drops], indent=2, default=str))
    reasons: dict[str, int] = {}
    for drop in drops:
        reasons[drop.reason] = reasons.get(drop.reason, 0) + 1
    summary = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items())) or "none"
    print(f"{len(drops)} dropped event(s) in {args.flow}: {summary}", file=sys.stderr)
    return 0


def _send(args: argparse.Namespace) -> int:
    import httpx

    from switchyard_local.webhooks import signed_headers

    body = Path(args.event).read_bytes()
    headers = signed_headers(args.secret, body, event_id=args.event_id)
    response = httpx.post(args.url, content=body, headers=headers, timeout=30)
    print(response.status_code, response.text)
    return 0 if response.status_code < 300 else 1


def _local(args: argparse.Namespace) -> int:
    if args.action == "demo":
        from switchyard_local.demo import main as demo

        return demo()
    return _local_up(args)


def _local_up(args: argparse.Namespace) -> int:
    from switchyard_local.stack import LocalStack
    from switchyard_local.webhooks import SAMPLES

    log = Path(".local-stack") / "functions.log"
    log.parent.mkdir(exist_ok=True)
    with LocalStack(log_path=log, port=args.port) as stack:
        stack.run_pollers_in_background()
        url = stack.base_url
        webhook = stack.webhook_url(url, "nopcommerce")
        sample = SAMPLES / "nop_order_b2b.json"
        print(f"""Switchyard local stack is running (Ctrl-C to stop).
  webhook URLs     {webhook}
                   {stack.webhook_url(url, "clarity")}   (the Clarity sandbox posts here)
                   {stack.webhook_url(url, "streak")}?event=...   (the Streak sandbox posts here)
                   {stack.webhook_url(url, "quickbooks")}   (the QuickBooks sandbox posts here)
  signing secret   {stack.signing_secret}   (nopcommerce and clarity)
  Streak token     {stack.streak_token}
  Streak sandbox   {stack.streak.base_url}/_sandbox/state   (what Streak holds)
  Clarity sandbox  {stack.clarity.base_url}/_sandbox/state   (orders, customers, webhooks sent)
  QuickBooks       {stack.quickbooks.base_url}/_sandbox/state   (realm {stack.qbo_realm}: documents, items)
  nopCommerce API  {stack.nopcommerce.base_url}/_sandbox/state   (orders, notes, product stock)
  function logs    {log}

Send a signed webhook:
  .venv/bin/switchyard send {webhook} {sample} --secret {stack.signing_secret}
or with curl (docs/local-stack.md explains the signature):
  {curl_example(webhook, stack.signing_secret, sample)}
Act in the sandboxes as their users would (docs/local-stack.md): place an order in Clarity, drag a box in Streak.
""", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping")
    return 0


def curl_example(url: str, secret: str, sample: Path) -> str:
    key = secret.removeprefix("whsec_")
    return (
        f"id=msg_$(date +%s%N); ts=$(date +%s); body=$(cat {sample}); "
        f"sig=$(printf '%s.%s.%s' \"$id\" \"$ts\" \"$body\" | openssl dgst -sha256 -binary "
        f"-mac HMAC -macopt hexkey:$(echo {key} | base64 -d | xxd -p -c 256) | base64); "
        f"curl -sS -X POST {url} -H \"webhook-id: $id\" -H \"webhook-timestamp: $ts\" "
        f"-H \"webhook-signature: v1,$sig\" -H 'content-type: application/json' --data-binary \"$body\""
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchyard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    dry = commands.add_parser("dry-run", help="show what an event becomes, calling nobody")
    dry.add_argument("flow")
    dry.add_argument("event", help="a webhook body (JSON file)")
    dry.add_argument("--event-type", default=None, help="for deliveries of bare objects (Streak)")
    dry.add_argument("--item", default=None,
                     help="quickbooks-to-nopcommerce: the QuickBooks Item (JSON file) the notification names, "
                          "as the worker would read it")
    dry.set_defaults(run=_dry_run)

    dlq = commands.add_parser("dlq", help="inspect or redrive a flow's dead-letter queue")
    dlq.add_argument("action", choices=["list", "redrive"])
    dlq.add_argument("flow")
    dlq.add_argument("--stack", default="Switchyard-dev")
    dlq.add_argument("--region", default=None)
    dlq.add_argument("--endpoint-url", default=None)
    dlq.add_argument("--limit", type=int, default=None)
    dlq.set_defaults(run=_dlq)

    drops = commands.add_parser("drops", help="list a flow's events accepted but not applied, with reasons")
    drops.add_argument("flow")
    drops.add_argument("--stack", default="Switchyard-dev")
    drops.add_argument("--region", default=None)
    drops.add_argument("--endpoint-url", default=None)
    drops.set_defaults(run=_drops)

    send = commands.add_parser("send", help="post a signed webhook")
    send.add_argument("url")
    send.add_argument("event")
    send.add_argument("--secret", required=True)
    send.add_argument("--event-id", default=None, help="reuse to simulate a duplicate delivery")
    send.set_defaults(run=_send)

    connection = commands.add_parser("connection", help="a connection's state; reconnect it after a new consent")
    connection.add_argument("action", choices=["status", "reconnect"])
    connection.add_argument("name", nargs="?", help="the connection (flows.yaml), for reconnect")
    connection.add_argument("--refresh-token", default=None,
                            help="the new consent's refresh token ('-': read from stdin, out of shell history)")
    connection.add_argument("--auth-code", default=None, help="or the consent's one-time code, exchanged here")
    connection.add_argument("--redirect-uri", default=None, help="the redirect URI the consent used")
    connection.add_argument("--realm-id", default=None, help="QuickBooks: the company id the consent returned")
    connection.add_argument("--stack", default="Switchyard-dev")
    connection.add_argument("--region", default=None)
    connection.add_argument("--endpoint-url", default=None)
    connection.set_defaults(run=_connection)

    local = commands.add_parser("local", help="the embedded local stack")
    local.add_argument("action", choices=["demo", "up"])
    local.add_argument("--port", type=int, default=8080)
    local.set_defaults(run=_local)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
