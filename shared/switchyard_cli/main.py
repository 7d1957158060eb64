"""The ``switchyard`` command (Typer + Rich). Every failure an operator can cause or meet is one line on stderr
with an exit code from :mod:`switchyard_cli.errors`; ``--json`` prints what scripts read, on stdout."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from switchyard_cli import installed_version
from switchyard_cli.errors import CliError, ExitCode
from switchyard_cli.target import Target, target_from_environment

out = Console(soft_wrap=True)  # results (stdout)
err = Console(stderr=True, soft_wrap=True)  # summaries, progress, errors (stderr)

app = typer.Typer(name="switchyard", no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
                  help="Operate a Switchyard stack: status, dead letters, one order's trace, replay, drops, "
                       "connections, setup; dry-run a mapping.",
                  epilog="Exit codes: 0 done, 1 a problem found, 2 usage, 3 configuration (region, credentials, "
                         "stack), 4 endpoint unreachable, 5 AWS refused, 70 a defect of the CLI.")
dlq_app = typer.Typer(no_args_is_help=True, help="A flow's dead letters: list, show, redrive, discard.")
connection_app = typer.Typer(no_args_is_help=True, help="Connections: which wait for a reconnect; reconnect one.")
local_app = typer.Typer(no_args_is_help=True, help="The embedded local stack (development extra).")
app.add_typer(dlq_app, name="dlq")
app.add_typer(connection_app, name="connection")
app.add_typer(local_app, name="local")


# --- options every stack command takes ------------------------------------------------------------------

_TARGET_OPTIONS = [
    inspect.Parameter("stack", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        str | None, typer.Option(help="stack name (default: Switchyard-<stage>; env SWITCHYARD_STACK)",
                                 rich_help_panel="Stack")]),
    inspect.Parameter("stage", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        str | None, typer.Option(help="stage (dev, qa, prod): the stack Switchyard-<stage>", rich_help_panel="Stack")]),
    inspect.Parameter("profile", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        str | None, typer.Option(help="AWS profile (env AWS_PROFILE)", rich_help_panel="Stack")]),
    inspect.Parameter("region", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        str | None, typer.Option(help="AWS region (env AWS_REGION)", rich_help_panel="Stack")]),
    inspect.Parameter("endpoint_url", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        str | None, typer.Option(help="AWS endpoint (env SWITCHYARD_ENDPOINT_URL)", rich_help_panel="Stack")]),
    inspect.Parameter("local", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
        bool, typer.Option("--local", help="the stack `make dev` runs here (.local-stack/endpoint.json)",
                           rich_help_panel="Stack")]),
]
_JSON_OPTION = inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
    bool, typer.Option("--json", help="print JSON (for scripts) instead of tables")])


def stack_command(function: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the stack options (``--stack``, ``--stage``, ``--profile``, ``--region``, ``--endpoint-url``,
    ``--local``) and ``--json``; it receives ``target`` and ``as_json``."""
    signature = inspect.signature(function, eval_str=True)
    own = [p for name, p in signature.parameters.items() if name not in ("target", "as_json")]
    wants_json = "as_json" in signature.parameters

    @functools.wraps(function)
    def command(*args: Any, **kwargs: Any) -> Any:
        options = {p.name: kwargs.pop(p.name) for p in _TARGET_OPTIONS}
        if wants_json:
            kwargs["as_json"] = kwargs.pop("as_json")
        return function(*args, target=target_from_environment(**options), **kwargs)

    extra = _TARGET_OPTIONS + ([_JSON_OPTION] if wants_json else [])
    command.__signature__ = signature.replace(parameters=own + extra)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in own + extra}
    return command


def json_command(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--json`` alone, for commands that reach no stack."""
    signature = inspect.signature(function, eval_str=True)
    own = [p for name, p in signature.parameters.items() if name != "as_json"]
    command = functools.wraps(function)(lambda *args, **kwargs: function(*args, **kwargs))
    command.__signature__ = signature.replace(parameters=[*own, _JSON_OPTION])  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in [*own, _JSON_OPTION]}
    return command


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _version(value: bool) -> None:
    if value:
        print(f"switchyard {installed_version()}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="print the version and exit")] = False) -> None:
    del version


# --- helpers --------------------------------------------------------------------------------------------

def _catalog() -> Any:
    from switchyard.catalog import load_catalog

    return load_catalog()


def _known_flow(flow: str) -> None:
    flows = _catalog().flows
    if flow not in flows:
        raise CliError(f"unknown flow {flow!r}; flows: {', '.join(flows)}")


def _flows(target: Target, flow: str | None) -> list[str]:
    """The flow given (checked against the catalog), or every flow the stack deploys."""
    if flow is not None:
        _known_flow(flow)
        return [flow]
    return target.resources().flows()


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"{path}: is a folder, not a file") from None
    except PermissionError:
        raise CliError(f"{path}: not readable") from None


_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str | None, *, now: datetime | None = None) -> datetime | None:
    """``2026-12-03T10:00``, ``2026-12-03`` (UTC unless an offset is given) or an age: ``30m``, ``2h``, ``3d``."""
    if text is None:
        return None
    relative = _RELATIVE.match(text.strip())
    if relative:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"not a time: {text!r} (give 2026-12-03T10:00, 2026-12-03, or an age: 30m, 2h, 3d)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- dry-run and send (no stack) ------------------------------------------------------------------------

@app.command("dry-run")
@json_command
def dry_run_command(
    flow: Annotated[str, typer.Argument(help="the flow (flows.yaml)")],
    event: Annotated[Path, typer.Argument(help="a webhook body (JSON file)")],
    event_type: Annotated[str | None, typer.Option(help="for sources that post bare objects (event type in the URL)")]
    = None,
    item: Annotated[Path | None, typer.Option(help="quickbooks-to-nopcommerce: the QuickBooks Item (JSON file) the "
                                                   "notification names, as the worker would read it")] = None,
    as_json: bool = False,
) -> None:
    """What an event becomes under a flow's mapping, calling nobody. The body is judged first as ingest judges it."""
    from switchyard.errors import DeliveryError, SwitchyardError, WebhookRejectedError
    from switchyard.ingest import split_delivery
    from switchyard.mapping import dry_run
    from switchyard.webhook_json import decode

    catalog = _catalog()
    _known_flow(flow)
    config = catalog.flows[flow]
    if config.mapping is None:  # e.g. stock levels: nothing to plan without reading the target
        raise CliError(f"flow {flow!r} has no mapping document to dry-run (its docs say what it does)")
    delivery_format = catalog.sources[config.source].format
    if delivery_format == "object-array" and not event_type:
        raise CliError("this flow's source posts bare objects: give --event-type")
    body = _read_file(event)
    try:
        events, _ignored = split_delivery(config.source, delivery_format, decode(body), event_type=event_type or "",
                                          routes={name: {flow: ""} for name in config.events},
                                          body=body.decode("utf-8", errors="replace"))
    except WebhookRejectedError as exc:
        print_json({"status": exc.status_code, **exc.body()})
        err.print(f"ingest would answer {exc.status_code}: {exc.body().get('message', '')}", markup=False)
        raise typer.Exit(ExitCode.PROBLEM) from None
    read_item = json.loads(_read_file(item), parse_float=Decimal) if item is not None else None
    shown = []
    for queued in events:
        data = json.loads(queued.body, parse_float=Decimal)["data"]  # as the worker reads it: money exact
        if read_item is not None:  # what the worker would read from the target's API (QuickBooks' Item)
            data = {**data, "Item": read_item}
        try:
            action, plan = dry_run(config.target, config.mapping_document, queued.event_type, data,
                                   source=config.source)
        except (DeliveryError, SwitchyardError) as exc:
            print_json({"error": getattr(exc, "reason", "mapping_error"), "message": str(exc)})
            raise typer.Exit(ExitCode.PROBLEM) from None
        shown.append({"flow": flow, "action": action,
                      "plan": dataclasses.asdict(plan) if dataclasses.is_dataclass(plan) else plan})  # type: ignore[arg-type]
    print_json(shown[0] if len(shown) == 1 else shown)


@app.command()
@json_command
def send(
    url: Annotated[str, typer.Argument(help="a webhook URL, e.g. http://127.0.0.1:8080/webhooks/nopcommerce")],
    event: Annotated[Path, typer.Argument(help="the body (JSON file)")],
    secret: Annotated[str, typer.Option(help="the source's signing secret (whsec_...)", envvar="SWITCHYARD_SECRET")],
    event_id: Annotated[str | None, typer.Option(help="reuse one to send a duplicate delivery")] = None,
    as_json: bool = False,
) -> None:
    """Post a Standard Webhooks signed event, as a storefront would."""
    import httpx
    from switchyard.signatures import sign

    body = _read_file(event)
    try:
        headers = sign(secret, event_id or f"msg_{uuid.uuid4().hex}", int(time.time()), body)
    except ValueError as exc:
        raise CliError(f"not a signing secret: {exc}") from None
    try:
        response = httpx.post(url, content=body, headers={**headers, "content-type": "application/json"}, timeout=30)
    except httpx.InvalidURL as exc:
        raise CliError(f"not a URL: {url} ({exc})") from None
    except httpx.TransportError as exc:
        raise CliError(f"cannot reach {url}: {exc} (is the stack running? `make dev`)", ExitCode.UNREACHABLE) from None
    if as_json:
        try:
            answer: Any = response.json()
        except ValueError:
            answer = response.text
        print_json({"status": response.status_code, "body": answer})
    else:
        out.print(f"{response.status_code} {response.text}", markup=False)
    if response.status_code >= 300:
        raise typer.Exit(ExitCode.PROBLEM)


# --- dead letters -----------------------------------------------------------------------------------------

FlowArg = Annotated[str | None, typer.Argument(help="the flow (default: every flow of the stack)")]
ReasonOpt = Annotated[list[str] | None, typer.Option("--reason", help="only letters with this reason (repeatable)")]
OrderOpt = Annotated[list[str] | None, typer.Option("--order", help="only letters of this order: number or id "
                                                    "(repeatable)")]
IdOpt = Annotated[list[str] | None, typer.Option("--id", help="only this letter: its id or event id (repeatable)")]
SinceOpt = Annotated[str | None, typer.Option(help="failed at or after: 2026-12-03T10:00, or an age: 30m, 2h, 3d")]
UntilOpt = Annotated[str | None, typer.Option(help="failed at or before (same forms as --since)")]
NewestOpt = Annotated[bool, typer.Option("--newest-first", help="newest failure first (default: oldest first)")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="act without asking")]
LimitOpt = Annotated[int | None, typer.Option(help="act on at most this many letters (the oldest first)")]


def _selection(reason: list[str] | None, order: list[str] | None, letter_id: list[str] | None, since: str | None,
               until: str | None) -> Any:
    from switchyard_cli.operations import Selection

    return Selection(reasons=tuple(reason or ()), orders=tuple(order or ()), ids=tuple(letter_id or ()),
                     since=parse_when(since), until=parse_when(until))


def _letters(target: Target, flows: list[str], selection: Any) -> list[tuple[Any, str, str]]:
    """(letter, queue URL, DLQ URL) of every selected letter of the flows, oldest failure first."""
    from switchyard_cli.operations import read_letters
    from switchyard_cli.orders import order_reader

    sqs = target.client("sqs")
    reader = order_reader(_catalog())
    found: list[tuple[Any, str, str]] = []
    for flow in flows:
        queue_url, dlq_url = target.resources().flow_queues(flow)
        found.extend((letter, queue_url, dlq_url) for letter in read_letters(sqs, dlq_url, flow, reader)
                     if selection.matches(letter))
    return sorted(found, key=lambda item: (item[0].failed_at or datetime.min.replace(tzinfo=UTC)))


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str) if value is not None else ""
    return text if len(text) <= width else text[:width - 1] + "…"


def _letters_table(letters: list[Any]) -> Table:
    table = Table(show_lines=False)
    for column in ("id", "flow", "order", "event", "reason"):
        table.add_column(column, no_wrap=True)
    table.add_column("target said", overflow="fold", ratio=1)  # the one column that gives way on a narrow terminal
    table.add_column("attempts", justify="right")
    table.add_column("failed at", no_wrap=True)
    for letter in letters:
        said = f"{letter.target_status} {_short(letter.target_response, 50)}" if letter.target_status else _short(
            letter.message, 50)
        table.add_row(letter.message_id[:8], letter.flow, letter.order or "-", letter.event_type or "-",
                      letter.reason, said, str(letter.attempts),
                      letter.failed_at.strftime("%Y-%m-%d %H:%M:%S") if letter.failed_at else "-")
    return table


@dlq_app.command("list")
@stack_command
def dlq_list(flow: FlowArg = None, reason: ReasonOpt = None, order: OrderOpt = None, letter_id: IdOpt = None,
             since: SinceOpt = None, until: UntilOpt = None, newest_first: NewestOpt = False, *, target: Target,
             as_json: bool) -> None:
    """Dead letters with their order, reason, what the target answered and attempts. Nothing is consumed."""
    selection = _selection(reason, order, letter_id, since, until)
    letters = [letter for letter, _, _ in _letters(target, _flows(target, flow), selection)]
    if newest_first:
        letters.reverse()
    if as_json:
        print_json([letter.summary() for letter in letters])
    elif letters:
        out.print(_letters_table(letters))
    reasons = Counter(letter.reason for letter in letters)
    summary = ", ".join(f"{count} {name}" for name, count in reasons.most_common()) or "none"
    err.print(f"{len(letters)} dead letter(s) in {flow or 'every flow'} of {target.stack_name}: {summary}",
              markup=False)


@dlq_app.command("show")
@stack_command
def dlq_show(letter_id: Annotated[str, typer.Argument(help="the letter's id (as listed, or its start) or event id")],
             flow: FlowArg = None, *, target: Target, as_json: bool) -> None:
    """One letter in full: the target's whole answer and the event as queued."""
    from switchyard_cli.orders import event_data

    found = [letter for letter, _, _ in _letters(target, _flows(target, flow), _selection(None, None, None, None, None))
             if letter.message_id.startswith(letter_id) or letter.event_id == letter_id]
    if not found:
        raise CliError(f"no dead letter {letter_id!r} in {flow or 'any flow'} of {target.stack_name}", ExitCode.PROBLEM)
    if len(found) > 1:
        raise CliError(f"{letter_id!r} names {len(found)} letters: give more of the id ("
                       + ", ".join(letter.message_id for letter in found) + ")")
    letter = found[0]
    try:
        queued = json.loads(letter.original)
    except ValueError:
        queued = {}
    shown = {**letter.summary(), "orders": list(letter.orders),
             "event": event_data(queued) if isinstance(queued, dict) else None}
    if as_json:
        print_json(shown)
        return
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in shown.items():
        table.add_row(key, value if isinstance(value, str) else json.dumps(value, indent=2, default=str))
    out.print(table)


def _act(target: Target, flow: str | None, selection: Any, *, limit: int | None, yes: bool, redrive: bool,
         as_json: bool) -> None:
    from rich.progress import Progress

    from switchyard_cli.operations import Outcome, act_on

    verb = "redrive" if redrive else "discard"
    chosen = _letters(target, _flows(target, flow), selection)
    if limit is not None:
        chosen = chosen[:limit]
    if not chosen:
        err.print(f"no dead letter to {verb} in {flow or 'any flow'} of {target.stack_name}", markup=False)
        if as_json:
            print_json([])
        return
    if not as_json:
        out.print(_letters_table([letter for letter, _, _ in chosen]))
    if not yes:
        if not sys.stdin.isatty():
            raise CliError(f"{verb} {len(chosen)} letter(s)? No terminal to ask: give --yes")
        question = (f"Send these {len(chosen)} letter(s) back to their flow queue?" if redrive
                    else f"Delete these {len(chosen)} letter(s) for good (their events are not delivered)?")
        if not typer.confirm(question, err=True):
            err.print("nothing done")
            raise typer.Exit(ExitCode.PROBLEM)
    outcomes: list[Outcome] = []
    by_dlq: dict[tuple[str, str], list[Any]] = {}
    for letter, queue_url, dlq_url in chosen:
        by_dlq.setdefault((queue_url, dlq_url), []).append(letter)
    sqs = target.client("sqs")
    with Progress(console=err, transient=True, disable=as_json) as progress:
        task = progress.add_task(f"{verb}ing", total=len(chosen))

        def advance(outcome: Outcome) -> None:
            progress.advance(task)
            if not as_json:
                detail = f" ({outcome.detail})" if outcome.detail else ""
                err.print(f"{outcome.letter.message_id[:8]}  {outcome.letter.flow}  order "
                          f"{outcome.letter.order or '-'}  {outcome.done}{detail}", markup=False)

        for (queue_url, dlq_url), letters in by_dlq.items():
            outcomes.extend(act_on(sqs, dlq_url, letters, redrive_to=queue_url if redrive else None,
                                   progress=advance))
    counts = Counter(outcome.done for outcome in outcomes)
    if as_json:
        print_json([{"id": o.letter.message_id, "flow": o.letter.flow, "order": o.letter.order,
                     "event_id": o.letter.event_id, "done": o.done, "detail": o.detail} for o in outcomes])
    err.print(", ".join(f"{count} {done}" for done, count in counts.most_common()), markup=False)
    if counts.get("failed"):
        raise typer.Exit(ExitCode.PROBLEM)


@dlq_app.command("redrive")
@stack_command
def dlq_redrive(flow: FlowArg = None, reason: ReasonOpt = None, order: OrderOpt = None, letter_id: IdOpt = None,
                since: SinceOpt = None, until: UntilOpt = None, limit: LimitOpt = None, yes: YesOpt = False, *,
                target: Target, as_json: bool) -> None:
    """Send the selected letters back through their flow (safe: workers are idempotent per flow + event id)."""
    _act(target, flow, _selection(reason, order, letter_id, since, until), limit=limit, yes=yes, redrive=True,
         as_json=as_json)


@dlq_app.command("discard")
@stack_command
def dlq_discard(flow: FlowArg = None, reason: ReasonOpt = None, order: OrderOpt = None, letter_id: IdOpt = None,
                since: SinceOpt = None, until: UntilOpt = None, limit: LimitOpt = None, yes: YesOpt = False, *,
                target: Target, as_json: bool) -> None:
    """Delete the selected letters (a runbook said to: booked by hand, or nothing to deliver)."""
    _act(target, flow, _selection(reason, order, letter_id, since, until), limit=limit, yes=yes, redrive=False,
         as_json=as_json)


# --- drops, connections, status ---------------------------------------------------------------------------

@app.command()
@stack_command
def drops(flow: FlowArg = None, *, target: Target, as_json: bool) -> None:
    """Events accepted but deliberately not applied (stale, not master, superseded), with their reasons."""
    from switchyard.drops import DynamoDropLog

    log = DynamoDropLog(target.client("dynamodb"), target.resources().one(role="idempotency-table"))
    found = [drop for name in _flows(target, flow) for drop in log.list(name)]
    if as_json:
        print_json([drop.to_dict() for drop in found])
    elif found:
        table = Table()
        for column in ("flow", "event id", "event", "reason", "dropped at"):
            table.add_column(column, no_wrap=True)
        for drop in found:
            row = drop.to_dict()
            table.add_row(str(row.get("flow")), str(row.get("event_id")), str(row.get("event_type")),
                          str(row.get("reason")), _when(row.get("dropped_at")))
        out.print(table)
    reasons = Counter(drop.reason for drop in found)
    summary = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items())) or "none"
    err.print(f"{len(found)} dropped event(s) in {flow or 'every flow'}: {summary}", markup=False)


@app.command()
@stack_command
def reconcile(
    flow: Annotated[str, typer.Argument(help="a shop's flow into accounting or the CRM (nopcommerce-to-quickbooks, "
                                             "nopcommerce-to-streak, clarity-to-streak)")],
    date_from: Annotated[str, typer.Option("--from", help="first day (UTC), YYYY-MM-DD")],
    date_to: Annotated[str, typer.Option("--to", help="last day (UTC), YYYY-MM-DD")],
    enqueue: Annotated[bool, typer.Option(help="queue the missing orders' events (the poller's ids: never twice)")]
    = False,
    *, target: Target,
) -> None:
    """A period's shop orders against the accounting documents or the CRM's deals: missing, extra, different
    (exit 1 if any)."""
    from datetime import date
    from datetime import time as clock_time

    from switchyard_cli.reconcile import DEAL_SOURCES, DEAL_TARGETS, reconcile_flow, shop_connection

    catalog = _catalog()
    _known_flow(flow)
    config = catalog.flows[flow]
    target_system = catalog.connections[config.connection].system
    books = target_system == "quickbooks" and config.source == "nopcommerce"
    if not books and not (target_system in DEAL_TARGETS and config.source in DEAL_SOURCES):
        raise CliError("reconcile compares a shop's orders with QuickBooks documents (nopcommerce -> quickbooks) "
                       "or Streak deals (nopcommerce or clarity -> streak): give such a flow", ExitCode.USAGE)
    try:
        first, last = date.fromisoformat(date_from), date.fromisoformat(date_to)
    except ValueError:
        raise CliError(f"not a day: give YYYY-MM-DD (got {date_from!r}, {date_to!r})", ExitCode.USAGE) from None
    if target.endpoint_url:  # the library's own clients (QuickBooks' token store and limiter) go there too
        os.environ["AWS_ENDPOINT_URL"] = target.endpoint_url
    if target.region:
        os.environ["AWS_DEFAULT_REGION"] = target.region
    resources = target.resources()
    secrets = target.client("secretsmanager")
    arns = {name: resources.secret(secrets, f"connection:{name}")
            for name in {*config.connections, shop_connection(catalog, config)}}
    queue_url, _ = resources.flow_queues(flow)
    start = datetime.combine(first, clock_time.min, tzinfo=UTC)
    end = datetime.combine(last, clock_time.min, tzinfo=UTC) + timedelta(days=1) - timedelta(seconds=1)
    code = reconcile_flow(flow, start, end, secret_arns=arns, table=resources.one(role="idempotency-table"),
                          queue_url=queue_url, enqueue=enqueue, secrets=target.client("secretsmanager"),
                          sqs=target.client("sqs"))
    if code:
        raise typer.Exit(code)


def _when(value: Any) -> str:
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(value) if value is not None else "-"


@connection_app.command("status")
@stack_command
def connection_status(*, target: Target, as_json: bool) -> None:
    """Each connection: connected, or waiting for a reconnect (since when, why)."""
    from switchyard_cli import connections

    states = connections.status(target.client("dynamodb"), table=target.resources().one(role="idempotency-table"),
                                connections=list(_catalog().connections))
    if as_json:
        print_json(states)
        return
    out.print(_connections_table(states))


def _connections_table(states: list[dict[str, Any]]) -> Table:
    table = Table()
    for column in ("connection", "status", "reason", "since"):
        table.add_column(column)
    for state in states:
        style = "green" if state["status"] == "connected" else "red"
        table.add_row(state["connection"], f"[{style}]{state['status']}[/]", state.get("reason") or "-",
                      _when(state.get("since")))
    return table


@connection_app.command("reconnect")
@stack_command
def connection_reconnect(
    name: Annotated[str, typer.Argument(help="the connection (flows.yaml)")],
    refresh_token: Annotated[str | None, typer.Option(
        help="the new consent's refresh token ('-': read it from stdin, out of shell history)")] = None,
    auth_code: Annotated[str | None, typer.Option(help="or the consent's one-time code, exchanged here")] = None,
    redirect_uri: Annotated[str | None, typer.Option(help="the redirect URI the consent used")] = None,
    realm_id: Annotated[str | None, typer.Option(help="QuickBooks: the company id the consent returned")] = None,
    *, target: Target, as_json: bool,
) -> None:
    """Store a new consent's refresh token and mark the connection usable: waiting events drain."""
    from switchyard_cli import connections

    catalog = _catalog()
    if name not in catalog.connections:
        raise CliError(f"unknown connection {name!r}; connections: {', '.join(catalog.connections)}")
    secrets = target.client("secretsmanager")
    secret_id = target.resources().secret(secrets, f"connection:{name}")
    token = sys.stdin.readline().strip() if refresh_token == "-" else refresh_token
    if auth_code:
        if not redirect_uri:
            raise CliError("--auth-code needs the --redirect-uri the consent used")
        secret = json.loads(secrets.get_secret_value(SecretId=secret_id)["SecretString"])
        token = connections.exchange_authorization_code(secret, auth_code, redirect_uri,
                                                        system=catalog.connections[name].system)["refresh_token"]
    if not token:
        raise CliError("give --refresh-token, or --auth-code and --redirect-uri")
    state = connections.reconnect(secrets, target.client("dynamodb"), table=target.resources().one(
        role="idempotency-table"), secret_id=secret_id, connection=name, refresh_token=token, realm_id=realm_id)
    if as_json:
        print_json({"connection": name, "status": state.status.value})
    err.print(f"connection {name} is {state.status.value}: waiting events drain within 10 minutes", markup=False)


RECENT_FAILURES = 5


@app.command()
@stack_command
def status(flow: FlowArg = None, *, target: Target, as_json: bool) -> None:
    """Per flow: queue depth, oldest message age, dead letters by reason, its target's circuit breaker and its
    source's last poll; connections; the latest failures."""
    from switchyard_cli import connections, health
    from switchyard_cli.operations import queue_depth

    catalog = _catalog()
    flows = _flows(target, flow)
    sqs = target.client("sqs")
    dynamodb = target.client("dynamodb")
    table = target.resources().one(role="idempotency-table")
    letters = _letters(target, flows, _selection(None, None, None, None, None))
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for name in flows:
        queue_url, _dlq_url = target.resources().flow_queues(name)
        depth = queue_depth(sqs, queue_url)
        reasons = Counter(letter.reason for letter, _, _ in letters if letter.flow == name)
        config = catalog.flows.get(name)
        rows.append({"flow": name, **depth, "oldest_age_seconds": _oldest_age(target, queue_url),
                     "dead_letters": sum(reasons.values()), "dead_letters_by_reason": dict(reasons.most_common()),
                     "breaker": health.breaker(dynamodb, table, config.connection, now=now.timestamp())
                     if config is not None else None,
                     "last_poll": health.last_poll(dynamodb, table, catalog, config.source, now=now)
                     if config is not None else None})
    used = sorted({c for name in flows if name in catalog.flows for c in catalog.flows[name].connections})
    states = connections.status(dynamodb, table=table, connections=used)
    recent = [letter.summary() for letter, _, _ in letters[-RECENT_FAILURES:][::-1]]
    if as_json:
        print_json({"stack": target.stack_name, "flows": rows, "connections": states, "recent_failures": recent})
        return
    table_view = Table(title=f"{target.stack_name}")
    for column in ("flow", "waiting", "in flight", "delayed", "oldest", "dead letters", "breaker", "last poll"):
        table_view.add_column(column)
    for row in rows:
        age = row["oldest_age_seconds"]
        by_reason = ", ".join(f"{count} {reason}" for reason, count in row["dead_letters_by_reason"].items())
        table_view.add_row(row["flow"], str(row["waiting"]), str(row["in_flight"]), str(row["delayed"]),
                           "-" if age is None else _age(age), f"[red]{by_reason}[/]" if by_reason else "0",
                           _breaker_cell(row["breaker"]), _poll_cell(row["last_poll"]))
    out.print(table_view)
    out.print(_connections_table(states))
    if recent:
        out.print("Latest failures")
        out.print(_letters_table([letter for letter, _, _ in letters[-RECENT_FAILURES:][::-1]]))


def _breaker_cell(breaker: dict[str, Any] | None) -> str:
    if breaker is None:
        return "-"
    if breaker["status"] == "open":
        return f"[red]open[/] ({breaker['connection']}, probe in {_age(breaker['next_probe_in_seconds'])})"
    if breaker["status"] == "half_open":
        return f"[yellow]probing[/] ({breaker['connection']})"
    return f"[green]closed[/] ({breaker['connection']})"


def _poll_cell(poll: dict[str, Any] | None) -> str:
    if poll is None:
        return "-"
    if poll["watermark"] is None:
        return "[yellow]never finished[/]"
    return f"{_age(max(0, poll['lag_seconds']))} ago"


def _age(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _oldest_age(target: Target, queue_url: str) -> float | None:
    """SQS publishes the oldest message's age to CloudWatch only (reading the queue would hide messages from the
    worker): the last five minutes' maximum, None where there is no datapoint (an idle queue, the local stack)."""
    import botocore.exceptions

    now = datetime.now(UTC)
    try:
        points = target.client("cloudwatch").get_metric_statistics(
            Namespace="AWS/SQS", MetricName="ApproximateAgeOfOldestMessage",
            Dimensions=[{"Name": "QueueName", "Value": queue_url.rstrip("/").rsplit("/", 1)[-1]}],
            StartTime=now - timedelta(minutes=5), EndTime=now, Period=60, Statistics=["Maximum"])["Datapoints"]
    except botocore.exceptions.ClientError:
        return None
    return max((point["Maximum"] for point in points), default=None)


@app.command()
@stack_command
def trace(order: Annotated[str, typer.Argument(help="the order as its source names it first (flows.yaml order_ref: "
                                                    "nopCommerce's order number, Clarity's orderId)")],
          flow: FlowArg = None, *, target: Target, as_json: bool) -> None:
    """One order's whole story: every delivery of every flow (created, duplicate, stale, dead-lettered and why,
    the target's record ids) and the letters still waiting in a DLQ."""
    from switchyard.audit import DynamoDeliveryAudit

    flows = _flows(target, flow)
    audit = DynamoDeliveryAudit(target.client("dynamodb"), target.resources().one(role="idempotency-table"))
    story = sorted(((name, entry) for name in flows for entry in audit.read(name, order)),
                   key=lambda item: item[1].at)
    waiting = [letter for letter, _, _ in _letters(target, flows, _selection(None, [order], None, None, None))]
    if as_json:
        print_json({"order": order, "deliveries": [{"flow": name, **entry.to_dict()} for name, entry in story],
                    "dead_letters": [letter.summary() for letter in waiting]})
    else:
        table = Table(title=f"order {order}")
        for column in ("at", "flow", "event", "event id", "outcome", "reason"):
            table.add_column(column, no_wrap=True)
        table.add_column("details", overflow="fold", ratio=1)
        for name, entry in story:
            table.add_row(_when(entry.at), name, entry.event_type, entry.event_id, entry.outcome, entry.reason or "-",
                          ", ".join(f"{key} {value}" for key, value in entry.detail.items() if value is not None))
        if story:
            out.print(table)
        if waiting:
            out.print("Waiting in a DLQ (switchyard dlq show ID)")
            out.print(_letters_table(waiting))
    outcomes = Counter(entry.outcome for _, entry in story)
    err.print(f"order {order}: {len(story)} deliveries in {len({name for name, _ in story})} flow(s)"
              + (f" ({', '.join(f'{count} {outcome}' for outcome, count in outcomes.most_common())})" if story else "")
              + f", {len(waiting)} dead letter(s) waiting", markup=False)
    if not story and not waiting:
        raise CliError(f"no trace of order {order!r} in {target.stack_name} (kept for the stage's log retention)",
                       ExitCode.PROBLEM)


@app.command()
@stack_command
def replay(
    flow: Annotated[str, typer.Argument(help="the flow (flows.yaml) whose archived events to replay")],
    since: Annotated[str, typer.Option("--from", help="received at or after: 2026-12-03T10:00, or an age: 2h, 3d")],
    until: Annotated[str | None, typer.Option("--to", help="received at or before (same forms; default: now)")] = None,
    order: OrderOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only show, per event, what was sent and what today's "
                                                            "mapping would send (a diff); queue nothing")] = False,
    config: Annotated[Path | None, typer.Option(help="--dry-run: the configuration folder (flows.yaml, mappings/) "
                                                     "to compare with (default: this installation's)")] = None,
    yes: YesOpt = False,
    *, target: Target, as_json: bool,
) -> None:
    """Archived events of a flow, oldest first: with --dry-run, what the stack's mapping sent next to what today's
    would send; else queued again on the flow's queue (an event already delivered is a duplicate: nothing twice)."""
    from switchyard.archive import S3DeliveryArchive
    from switchyard.audit import DynamoDeliveryAudit

    from switchyard_cli import replay as replaying

    catalog = _catalog()
    _known_flow(flow)
    start, end = parse_when(since), parse_when(until) or datetime.now(UTC)
    assert start is not None
    if start > end:
        raise CliError(f"--from {since} is after --to {until or 'now'}")
    if config is not None and not (config / "flows.yaml").is_file():
        raise CliError(f"{config}: no flows.yaml here (give the folder that holds flows.yaml and mappings/)")
    resources = target.resources()
    found = resources.find(role="archive")
    if not found:
        raise CliError(f"stack {target.stack_name} keeps no archive (deployed before replay existed?): deploy again",
                       ExitCode.CONFIGURATION)
    bucket, bucket_resource = found[0]
    archive = S3DeliveryArchive(target.client("s3"), bucket)
    items = replaying.select(archive, catalog, flow, start, end, order or ())
    if dry_run:
        audit = DynamoDeliveryAudit(target.client("dynamodb"), resources.one(role="idempotency-table"))
        compared = replaying.compare(flow, items, deployed=replaying.deployed_config(bucket_resource),
                                     now_config=config, audit=lambda ref: audit.read(flow, ref))
        if as_json:
            print_json({"flow": flow, "from": start.isoformat(), "to": end.isoformat(),
                        "events": [c.to_dict() for c in compared]})
        else:
            for c in compared:
                head = (f"{c.item.delivery.received_at}  {c.item.event.event_type}  {c.item.event.event_id}  "
                        f"order {c.item.order or '-'}  delivered: {c.outcome or 'no record'}")
                out.print(head, markup=False, highlight=False)
                if c.mapping_changed_since:
                    out.print("  (the stack's mapping changed since this event arrived: 'sent' is what it sends "
                              "now)", markup=False)
                for line in c.diff or ["  same plan under both mappings"]:
                    colour = "green" if line.startswith("+") else "red" if line.startswith("-") else None
                    out.print(f"  {line}", style=colour, markup=False, highlight=False)
        changed = sum(1 for c in compared if c.diff)
        err.print(f"{len(compared)} event(s) of {flow} from {start.isoformat()} to {end.isoformat()}: {changed} "
                  "would be sent differently today (nothing queued: --dry-run)", markup=False)
        return
    if not items:
        err.print(f"no archived events of {flow} from {start.isoformat()} to {end.isoformat()}", markup=False)
        return
    queue_url, _dlq_url = resources.flow_queues(flow)
    if not yes:
        if not sys.stdin.isatty():
            raise CliError(f"replaying {len(items)} event(s) needs --yes when not asked at a terminal")
        typer.confirm(f"Queue {len(items)} archived event(s) of {flow} again? (delivered ones are duplicates)",
                      abort=True, err=True)
    shown: list[dict[str, Any]] = []

    def progress(item: Any, done: str) -> None:
        shown.append({"event_id": item.event.event_id, "event_type": item.event.event_type, "order": item.order,
                      "received_at": item.delivery.received_at, "done": done})
        if not as_json:
            out.print(f"{item.event.event_id}  {item.event.event_type}  order {item.order or '-'}  {done}",
                      markup=False, highlight=False)

    counts = replaying.send(target.client("sqs"), queue_url, flow, items, progress)
    if as_json:
        print_json({"flow": flow, "events": shown, **counts})
    err.print(f"{counts['queued']} event(s) queued again on {flow}, {counts['failed']} failed "
              "(`switchyard trace ORDER` shows what each did)", markup=False)
    if counts["failed"]:
        raise typer.Exit(ExitCode.PROBLEM)


def _secret_table(states: list[Any]) -> Table:
    table = Table()
    for column in ("secret", "state", "empty keys"):
        table.add_column(column, no_wrap=True)
    colour = {"set": "green", "partial": "yellow", "missing": "red"}
    for state in states:
        table.add_row(state.tag, f"[{colour[state.state]}]{state.state}[/]", ", ".join(state.empty_keys) or "-")
    return table


@app.command()
@stack_command
def setup(stage_name: Annotated[str | None, typer.Argument(
              metavar="STAGE", help="the stage (dev, qa, prod): its stack Switchyard-<stage>")] = None,
          check: Annotated[bool, typer.Option("--check", help="only report: missing secrets, each connection's "
                                                              "check call, webhook registrations")] = False,
          webhook_base_url: Annotated[str | None, typer.Option(
              help="the webhook API's base URL (default: the stack's ApiUrl output)")] = None,
          consent: Annotated[bool, typer.Option(
              "--consent", help="run a pending OAuth consent even without a terminal")] = False,
          redirect_port: Annotated[int, typer.Option(help="the consent's local redirect listener "
                                                          "(http://localhost:PORT/callback)")] = 8765,
          *, target: Target, as_json: bool) -> None:
    """After a deploy: fill the stack's secrets (generates the webhook signing secrets and tokens, asks for the
    vendors' credentials, changes no value already there), check each connection with a real call, register the
    webhooks a vendor takes through its API, run a pending OAuth consent once, and say what to set by hand.
    Idempotent. With --check: reports only (exit 1 if anything is missing or refused)."""
    from switchyard_cli import connections
    from switchyard_cli import setup as secrets_setup

    if stage_name and not target.stack:
        target.stage = stage_name
    catalog = _catalog()
    systems = {name: config.system for name, config in catalog.connections.items()}
    client = target.client("secretsmanager")
    arns = target.resources().secrets(client)
    if not arns:
        raise CliError(f"stack {target.stack_name} has no secrets to set up", ExitCode.CONFIGURATION)
    states = secrets_setup.read_states(client, arns)
    filled: list[dict[str, Any]] = []
    if not check:
        for state in states:
            if state.state == "set":
                continue
            values = secrets_setup.generate(state)
            asked = [key for key in state.empty_keys if key not in values]
            if asked and sys.stdin.isatty():
                err.print(f"{state.tag}: enter the values from the vendor (empty: leave it empty)", markup=False)
                for key in asked:
                    values[key] = typer.prompt(f"  {key}", default="", show_default=False,
                                               hide_input=key not in secrets_setup.NOT_A_CREDENTIAL, err=True)
            document = secrets_setup.with_values(state, values)
            if document != state.value:
                client.put_secret_value(SecretId=state.arn, SecretString=json.dumps(document))
                generated = {key: value for key, value in values.items() if key in secrets_setup.GENERATED}
                filled.append({"secret": state.tag, "put": sorted(k for k in values if values[k]),
                               "generated": generated})
        if filled:
            states = secrets_setup.read_states(client, arns)
    consents: list[dict[str, Any]] = []
    waiting = secrets_setup.needs_consent(states, systems)
    if waiting and not check and (consent or sys.stdin.isatty()):
        for name in waiting:
            consents.append(_consent(target, client, name, systems[name], arns[f"connection:{name}"],
                                     redirect_port, connections, secrets_setup))
        states = secrets_setup.read_states(client, arns)
    pending = secrets_setup.needs_consent(states, systems)
    checks = secrets_setup.check_connections(states, systems)
    base = webhook_base_url or _stack_output(target, "ApiUrl")
    url = (lambda source: f"{base.rstrip('/')}/webhooks/{source}") if base else (lambda source: None)
    registrations = secrets_setup.register_webhooks(states, systems, url, apply=not check)
    by_hand = [line for source in catalog.webhook_sources for line in _instructions(source, url(source))]
    reports = [state.report() for state in states]
    if as_json:
        print_json({"stack": target.stack_name, "secrets": reports, "filled": filled, "checks": checks,
                    "webhooks": registrations, "consents": consents, "consent_pending": pending,
                    "by_hand": by_hand})
    else:
        out.print(_secret_table(states))
        for entry in filled:
            for key, value in entry["generated"].items():
                out.print(f"{entry['secret']}: generated {key}: {value}  (give it to the sender)", markup=False)
        for entry in checks:
            mark = {True: "ok", False: "FAILED", None: "-"}[entry["ok"]]
            out.print(f"connection {entry['connection']}: {mark} {entry.get('reached') or entry.get('error')}",
                      markup=False)
        for entry in registrations:
            for line in entry["lines"]:
                out.print(f"webhooks {entry['source']}: {line}", markup=False)
        for entry in consents:
            out.print(f"connection {entry['connection']}: consent {entry['status']}", markup=False)
        for line in by_hand:
            out.print(f"by hand: {line}", markup=False)
    missing = [state.tag for state in states if state.state == "missing"]
    refused = [entry["connection"] for entry in checks if entry["ok"] is False and entry["connection"] not in
               {tag.partition(":")[2] for tag in missing}]
    unregistered = [entry["source"] for entry in registrations if entry["ok"] is False]
    err.print(f"{len(missing)} of {len(states)} secret(s) missing" + (f": {', '.join(missing)}" if missing else "")
              + (" (every webhook of a missing source is rejected with 401)" if missing else "")
              + (f"; check refused: {', '.join(refused)}" if refused else "")
              + (f"; webhooks not registered: {', '.join(unregistered)}" if unregistered else "")
              + (f"; consent pending: {', '.join(pending)} (run setup at a terminal, or --consent)" if pending else ""),
              markup=False)
    if missing or refused or unregistered or pending:
        raise typer.Exit(ExitCode.PROBLEM)


def _stack_output(target: Target, key: str) -> str | None:
    stacks = target.client("cloudformation").describe_stacks(StackName=target.stack_name)["Stacks"]
    return next((str(o["OutputValue"]) for o in stacks[0].get("Outputs", []) if o.get("OutputKey") == key), None)


def _instructions(source: str, webhook_url: str | None) -> list[str]:
    from switchyard import registry

    try:
        hooks = registry.system(source).setup
    except LookupError:
        return []
    if hooks is None or hooks.instructions is None:
        return []
    return hooks.instructions(webhook_url or f"<ApiUrl>/webhooks/{source}")


def _consent(target: Target, secretsmanager: Any, name: str, system: str, secret_id: str, port: int,
             connections: Any, secrets_setup: Any) -> dict[str, Any]:
    """One OAuth consent: the redirect's code exchanged at the connection's token endpoint, the refresh token
    (and the company the consent chose) stored, the connection marked usable."""
    secret = json.loads(secretsmanager.get_secret_value(SecretId=secret_id)["SecretString"])
    try:
        code, redirect_uri, answer = secrets_setup.await_consent(
            secret, system, port=port, show=lambda text: err.print(text, markup=False, highlight=False))
        tokens = connections.exchange_authorization_code(secret, code, redirect_uri, system=system)
    except SystemExit as exc:  # the token endpoint refused the code
        return {"connection": name, "status": f"failed: {exc}"}
    except (TimeoutError, PermissionError, OSError) as exc:
        return {"connection": name, "status": f"failed: {exc}"}
    realm = answer.get("realmId") or None
    connections.reconnect(secretsmanager, target.client("dynamodb"),
                          table=target.resources().one(role="idempotency-table"), secret_id=secret_id,
                          connection=name, refresh_token=tokens["refresh_token"], realm_id=realm)
    return {"connection": name, "status": "stored" + (f" (company {realm})" if realm else "")}


# --- the local stack (development extra) ------------------------------------------------------------------

def _local_package() -> Any:
    try:
        import switchyard_local.devmode as devmode
    except ImportError as exc:
        raise CliError(f"the local stack is a development extra ({exc.name} is missing): in a checkout, `make dev`",
                       ExitCode.CONFIGURATION) from None
    return devmode


@local_app.command("up")
def local_up(port: Annotated[int, typer.Option(help="the webhook front door's port")] = 8080,
             aws_port: Annotated[int, typer.Option(help="the local AWS endpoint's port")] = 4566) -> None:
    """Keep the local stack running: webhooks on PORT, its AWS services on AWS_PORT (make dev)."""
    raise typer.Exit(_local_package().run(port=port, aws_port=aws_port))


@local_app.command("demo")
def local_demo() -> None:
    """The scripted tour of every flow on the local stack (make demo)."""
    _local_package()
    from switchyard_local.demo import main as demo

    raise typer.Exit(demo())


# --- entry point ------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every failure is one line on stderr and an exit code (``SWITCHYARD_DEBUG=1``: tracebacks)."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="switchyard", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        err.print("aborted: nothing more was done")
        return int(ExitCode.PROBLEM)
    except typer.TyperException as exc:  # a usage error: says which argument, with the usage line
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            err.print(f"error: {exc.format_message()}", markup=False)
        return int(exc.exit_code)
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except Exception as exc:
        if os.environ.get("SWITCHYARD_DEBUG"):
            raise
        known = _translate(exc)
        if known is not None:
            return _fail(*known)
        return _fail(f"internal error: {type(exc).__name__}: {exc} (SWITCHYARD_DEBUG=1 shows where)",
                     ExitCode.INTERNAL)
    return int(result) if isinstance(result, int) else 0


def _fail(message: str, code: ExitCode) -> int:
    err.print(f"error: {message}", markup=False, highlight=False)
    return int(code)


def _translate(exc: Exception) -> tuple[str, ExitCode] | None:
    """What boto3's and the network's failures mean to an operator."""
    import botocore.exceptions as boto

    if isinstance(exc, boto.NoRegionError):
        return "no AWS region: give --region, set AWS_REGION, or use --local for `make dev`", ExitCode.CONFIGURATION
    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
        return "no AWS credentials: give --profile or set AWS_PROFILE (or --local for `make dev`)", \
            ExitCode.CONFIGURATION
    if isinstance(exc, boto.ProfileNotFound):
        return str(exc), ExitCode.CONFIGURATION
    if isinstance(exc, boto.EndpointConnectionError | boto.ConnectTimeoutError | boto.ReadTimeoutError):
        return (f"cannot reach {getattr(exc, 'kwargs', {}).get('endpoint_url', 'the AWS endpoint')}: is the stack "
                "running (`make dev`) and the network up?", ExitCode.UNREACHABLE)
    if isinstance(exc, boto.ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "")
        if code == "ValidationError" and "does not exist" in message:
            return f"{message} (give --stack or --stage; --local for `make dev`)", ExitCode.CONFIGURATION
        if code in ("ExpiredToken", "ExpiredTokenException", "UnrecognizedClientException", "InvalidClientTokenId"):
            return f"AWS refused the credentials ({code}): {message}", ExitCode.CONFIGURATION
        return f"AWS refused {exc.operation_name}: {code}: {message}", ExitCode.AWS_REFUSED
    if isinstance(exc, boto.BotoCoreError):
        return str(exc), ExitCode.CONFIGURATION
    return None


if __name__ == "__main__":
    sys.exit(main())
