"""``make fuzz``: property-based fuzzing of the webhook edge, in this process (no network).

The ingest handler (``functions/ingest``) runs behind the local front door, exactly as the local
stack runs it, with its settings built from the catalog (one queue per flow and one secret per
source on moto). Three kinds of requests go through it:

- **schemathesis**: for every webhook endpoint of ``docs/openapi.json``, requests generated from the
  schema (positive and negative), sent as generated (stopped at the signature check) and again
  correctly signed (reaching the JSON, schema and routing checks);
- **hostile classes**: deep nesting, huge integers, NaN/Infinity, huge strings, duplicate keys, wrong
  content types and encodings, absurd headers, each before and after the signature check;
- **parsers** (hypothesis, no HTTP): arbitrary JSON documents and bytes through the strict decoder,
  the envelope validators and the Streak and QuickBooks splitters.

Every request must be answered below 500, a 4xx with a JSON ``{"error", "message"}``, and a rejected
request must leave every queue as it was; a class marked "must reject" must never be accepted.
The run prints requests per class and exits 1 when any of that fails.

    python -m switchyard_local.fuzz [--seconds 300] [--examples 150]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = Path(__file__).resolve().parent / "samples"
SIGNING_SECRET = "whsec_c3dpdGNoeWFyZC1mdXp6LXNpZ25pbmcta2V5LTAwMDE="
STREAK_TOKEN = "streak-fuzz-token"
QBO_VERIFIER = "qbo-fuzz-verifier"
REGION = "us-east-1"


@dataclass
class ClassTally:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: int = 0
    enqueued_for_rejected: int = 0
    accepted_but_must_reject: int = 0
    unclear_errors: int = 0  # a 4xx without a JSON {"error", "message"}
    failures: list[str] = field(default_factory=list)

    @property
    def bad(self) -> int:
        return self.server_errors + self.enqueued_for_rejected + self.accepted_but_must_reject + self.unclear_errors


@dataclass
class Report:
    classes: dict[str, ClassTally] = field(default_factory=dict)
    parser_cases: Counter[str] = field(default_factory=Counter)
    parser_failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def tally(self, name: str) -> ClassTally:
        return self.classes.setdefault(name, ClassTally())

    @property
    def requests(self) -> int:
        return sum(t.requests for t in self.classes.values())

    @property
    def server_errors(self) -> int:
        return sum(t.server_errors for t in self.classes.values())

    @property
    def enqueued_for_rejected(self) -> int:
        return sum(t.enqueued_for_rejected for t in self.classes.values())

    @property
    def ok(self) -> bool:
        return not self.parser_failures and all(t.bad == 0 for t in self.classes.values())

    def render(self) -> str:
        width = max(len(name) for name in self.classes) if self.classes else 10
        lines = [f"{'class':<{width}}  requests   2xx   4xx   5xx  enqueued-for-rejected  must-reject-accepted  "
                 "unclear-4xx"]
        for name, t in self.classes.items():
            ok2 = sum(n for s, n in t.statuses.items() if s < 300)
            ok4 = sum(n for s, n in t.statuses.items() if 400 <= s < 500)
            lines.append(f"{name:<{width}}  {t.requests:>8}  {ok2:>4}  {ok4:>4}  {t.server_errors:>4}  "
                         f"{t.enqueued_for_rejected:>21}  {t.accepted_but_must_reject:>20}  {t.unclear_errors:>11}")
        lines.append(f"{'total':<{width}}  {self.requests:>8}              {self.server_errors:>4}  "
                     f"{self.enqueued_for_rejected:>21}")
        lines.append(f"parsers (hypothesis, no HTTP): "
                     f"{', '.join(f'{k} {v}' for k, v in self.parser_cases.items())}; "
                     f"{len(self.parser_failures)} unexpected exception(s)")
        lines.append(f"{self.requests} requests and {sum(self.parser_cases.values())} parser cases in "
                     f"{self.seconds:.0f} s: {'OK' if self.ok else 'FAILED'}")
        for name, t in self.classes.items():
            lines += [f"  {name}: {failure}" for failure in t.failures[:5]]
        lines += [f"  parser: {failure}" for failure in self.parser_failures[:5]]
        return "\n".join(lines)


class _Discard(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


class IngestUnderTest:
    """The ingest function behind the front door, on moto, in this process."""

    def __init__(self) -> None:
        self._mock: Any = None
        self._saved_environ: dict[str, str] = {}
        self._queued = 0
        self.queue_urls: list[str] = []

    def __enter__(self) -> IngestUnderTest:
        from moto import mock_aws
        from switchyard.aws import clients
        from switchyard.catalog import load_catalog
        from werkzeug.test import Client

        from switchyard_local.front_door import FrontDoor, Route
        from switchyard_local.functions import InProcessFunction

        credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}
        self._saved_environ = dict(os.environ)
        os.environ.update(credentials)
        logging.getLogger("moto").setLevel(logging.ERROR)
        self._mock = mock_aws()
        self._mock.start()
        clients.reset()
        catalog = load_catalog()
        secrets, sqs = clients.client("secretsmanager"), clients.client("sqs")
        self.sqs = sqs
        values = {"standard-webhooks": {"signing_secrets": [SIGNING_SECRET]},
                  "shared-token": {"tokens": [STREAK_TOKEN]},
                  "intuit-signature": {"verifier_tokens": [QBO_VERIFIER]}}
        sources = {}
        for name, source in catalog.webhook_sources.items():
            arn = secrets.create_secret(Name=f"fuzz/source/{name}",
                                        SecretString=json.dumps(values[source.signature]))["ARN"]
            sources[name] = {"secret_arn": arn, "signature": source.signature, "format": source.format,
                             "ack_status": source.ack_status}
        routes: dict[str, dict[str, dict[str, str]]] = {name: {} for name in catalog.webhook_sources}
        for flow in catalog.flows.values():
            if flow.source not in routes:  # its events arrive through EventBridge, not the webhook endpoint
                continue
            url = sqs.create_queue(QueueName=f"fuzz-{flow.name}")["QueueUrl"]
            self.queue_urls.append(url)
            for event_type in flow.events:
                routes[flow.source].setdefault(event_type, {})[flow.name] = url
        # the variables the CDK app gives the ingest function (switchyard.settings.IngestSettings)
        environment = {"SWITCHYARD_STAGE": "fuzz", "SWITCHYARD_SOURCES": json.dumps(sources),
                       "SWITCHYARD_ROUTES": json.dumps(routes), "SWITCHYARD_MAX_BODY_BYTES": "262144",
                       "POWERTOOLS_SERVICE_NAME": "switchyard-ingest", "POWERTOOLS_METRICS_NAMESPACE": "Switchyard"}
        function = InProcessFunction(
            logical_id="FuzzIngest", function_name="switchyard-fuzz-ingest",
            arn=f"arn:aws:lambda:{REGION}:123456789012:function:switchyard-fuzz-ingest",
            code_dir=ROOT / "functions" / "ingest", handler="handler.lambda_handler", environment=environment,
            timeout_seconds=10, memory_mb=256, base_environment=credentials, log_stream=_Discard())
        self.front_door = FrontDoor([Route("POST", "/webhooks/{source}", function)])
        self.client = Client(self.front_door)
        return self

    def __exit__(self, *exc: object) -> None:
        from switchyard.aws import clients

        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        clients.reset()  # no client may outlive moto
        os.environ.clear()
        os.environ.update(self._saved_environ)

    def queued(self) -> int:
        """Messages in every flow queue (visible, in flight or delayed)."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]
        self._queued = sum(int(value) for url in self.queue_urls for value in self.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=names)["Attributes"].values())
        return self._queued

    @property
    def last_queued(self) -> int:
        """What ``queued`` counted last (nothing but the requests sent here queues anything)."""
        return self._queued

    def post(self, source: str, body: bytes, headers: dict[str, str], query: dict[str, str] | None = None,
             ) -> tuple[int, Any]:
        response = self.client.post(f"/webhooks/{source}", data=body, headers=headers, query_string=query or {})
        try:
            answer = json.loads(response.get_data())
        except ValueError:
            answer = None
        return response.status_code, answer


# --- signing: as each source's sender would ----------------------------------------------------------


def signed_headers(source: str, body: bytes, *, event_id: str | None = None) -> dict[str, str]:
    from switchyard.signatures import sign
    from switchyard.systems.quickbooks.webhooks import intuit_sign

    if source == "streak":
        return {"X-Streak-Webhook-Token": STREAK_TOKEN}
    if source == "quickbooks":
        return intuit_sign(QBO_VERIFIER, body)
    try:
        return sign(SIGNING_SECRET, event_id or f"msg_{uuid.uuid4().hex}", int(time.time()), body)
    except UnicodeDecodeError:  # the library signs text: a non-UTF-8 body cannot be signed (ingest says 401)
        return {"webhook-id": event_id or "msg_x", "webhook-timestamp": str(int(time.time())),
                "webhook-signature": "v1,AAAA"}


def base_bodies() -> dict[str, tuple[dict[str, str], Any]]:
    """A valid delivery per source: (query, document)."""
    box = json.loads((SAMPLES / "streak_box_change_stage.json").read_text())
    legacy = {"eventNotifications": [{"realmId": "9341453", "dataChangeEvent": {"entities": [
        {"name": "Item", "id": "7", "operation": "Update", "lastUpdated": "2026-11-20T09:15:02.000Z"}]}}]}
    return {
        "nopcommerce": ({}, json.loads((SAMPLES / "nop_order_b2b.json").read_text())),
        "clarity": ({}, json.loads((SAMPLES / "clarity_order_b2b.json").read_text())),
        "streak": ({"event": "BOX_CHANGE_STAGE"}, box),
        "quickbooks": ({}, legacy),
    }


# --- the hostile classes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    cls: str
    source: str
    body: bytes
    headers: dict[str, str]
    query: dict[str, str]
    must_reject: bool


def _replace_first_value(text: str, key: str, value: str) -> str:
    """The JSON text with the first value of ``"key":`` replaced by ``value`` (raw JSON text)."""
    document = json.loads(text)
    marker = "\u241f"

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            if key in node:
                node[key] = marker
                return True
            return any(walk(child) for child in node.values())
        if isinstance(node, list):
            return any(walk(child) for child in node)
        return False

    walk(document)
    return json.dumps(document).replace(json.dumps(marker), value, 1)


# a field per source whose value is bounded (number or string), and one that is free text
TARGETS = {"nopcommerce": ("OrderTotal", "CustomOrderNumber"), "clarity": ("totalAmount", "orderId"),
           "streak": ("lastUpdatedTimestamp", "stageKey"), "quickbooks": ("id", "id")}


def hostile_requests() -> Iterator[Hostile]:
    for source, (query, document) in base_bodies().items():
        text = json.dumps(document)
        number_field, string_field = TARGETS[source]

        def both(cls: str, body: str | bytes, must_reject: bool = True, headers: dict[str, str] | None = None,
                 source: str = source, query: dict[str, str] = query) -> Iterator[Hostile]:
            raw = body.encode() if isinstance(body, str) else body
            extra = headers or {}
            # before the signature check: a stranger without any secret
            yield Hostile(f"{cls} (unsigned)", source, raw, {"content-type": "application/json", **extra}, query,
                          True)
            # after it: a sender with the secret
            yield Hostile(f"{cls} (signed)", source, raw,
                          {"content-type": "application/json", **signed_headers(source, raw), **extra}, query,
                          must_reject)

        for depth in (33, 100, 1_000, 5_000, 50_000):
            yield from both("deep nesting", _replace_first_value(text, string_field, "[" * depth + "]" * depth))
        yield from both("deep nesting", "{\"a\":" * 3_000 + "1" + "}" * 3_000)
        for digits in (21, 400, 4_301, 10_000):
            yield from both("huge integers", _replace_first_value(text, number_field, "9" * digits))
            yield from both("huge integers", _replace_first_value(text, number_field, "-" + "9" * digits))
        for constant in ("NaN", "Infinity", "-Infinity", "1e400", "-1e999", "1E309"):
            yield from both("NaN/Infinity", _replace_first_value(text, number_field, constant))
        for length in (5_000, 200_000):
            yield from both("huge strings", _replace_first_value(text, string_field, json.dumps("7" * length)))
        yield from both("huge strings", json.dumps("x" * 250_000))
        yield from both("huge strings", b"x" * 300_000)  # above the 256 KiB limit: 413 before anything else
        first_key = string_field
        duplicated = _replace_first_value(text, first_key, f'"first", "{first_key}": "second"')
        yield from both("duplicate keys", duplicated)
        for content_type in ("text/plain", "application/xml", "multipart/form-data; boundary=x", "",
                             "application/json; charset=utf-16"):
            # the body decides: a valid JSON body with an odd content type is still judged as JSON
            yield from both("wrong content types", text, must_reject=False, headers={"content-type": content_type})
        for encoded in (text.encode("utf-16"), text.encode("utf-32"), text.encode("latin-1", "replace") + b"\xff",
                        b"\x00\x01\x02\xfe\xff" * 100, b"<order><id>1</id></order>"):
            yield from both("wrong content types", encoded)
        absurd = {"webhook-timestamp": "9" * 309}
        for headers in (absurd, {"webhook-timestamp": "-1"}, {"webhook-timestamp": "1e9"},
                        {"webhook-timestamp": "١٧٩٥١٦٦١٠٠"}, {"webhook-id": "x" * 8_000},
                        {"webhook-id": "id with spaces"}, {"webhook-signature": "v1," + "A" * 8_000},
                        {"webhook-signature": " ".join(["v1,AAAA"] * 1_000)},
                        {"X-Streak-Webhook-Token": "t" * 8_000}, {"intuit-signature": "%%%" * 2_000},
                        {"x-anything": "y" * 8_000}):
            if source == "streak" and "webhook-id" in str(headers):
                continue  # Streak signs nothing: the headers are not read
            yield Hostile("absurd headers (unsigned)", source, text.encode(),
                          {"content-type": "application/json", **headers}, query, True)
            signed = {**signed_headers(source, text.encode()), **headers}
            must_reject = any(name.lower() in {k.lower() for k in signed_headers(source, b"{}")}
                              for name in headers)
            yield Hostile("absurd headers (signed)", source, text.encode(),
                          {"content-type": "application/json", **signed}, query, must_reject)
    # a Streak delivery above the documented limit of objects per delivery
    from switchyard.ingest import MAX_EVENTS_PER_DELIVERY

    query, box = base_bodies()["streak"]
    boxes = [{**box[0], "key": f"box_{i}", "lastUpdatedTimestamp": box[0]["lastUpdatedTimestamp"] + i}
             for i in range(MAX_EVENTS_PER_DELIVERY + 1)]
    body = json.dumps(boxes).encode()
    yield Hostile("too many objects (signed)", "streak", body,
                  {"content-type": "application/json", **signed_headers("streak", body)}, query, True)


# --- running -----------------------------------------------------------------------------------------


def check(report: Report, stack: IngestUnderTest, cls: str, source: str, body: bytes, headers: dict[str, str],
          query: dict[str, str], *, must_reject: bool) -> int:
    tally = report.tally(cls)
    before = stack.last_queued
    try:
        status, answer = stack.post(source, body, headers, query)
    except Exception as exc:  # the front door itself failed: as bad as a 5xx
        status, answer = 599, {"error": type(exc).__name__}
    after = stack.queued()
    tally.requests += 1
    tally.statuses[status] += 1
    what = f"{source} {len(body)} bytes {sorted(headers)}: {status} {str(answer)[:160]}"
    if status >= 500:
        tally.server_errors += 1
        tally.failures.append(f"5xx: {what}")
    if status >= 400 and after != before:
        tally.enqueued_for_rejected += after - before
        tally.failures.append(f"enqueued {after - before} for a rejected request: {what}")
    if status < 300 and must_reject:
        tally.accepted_but_must_reject += 1
        tally.failures.append(f"accepted, must be rejected: {what}")
    if 400 <= status < 500 and not (isinstance(answer, dict) and answer.get("error") and answer.get("message")):
        tally.unclear_errors += 1
        tally.failures.append(f"4xx without a JSON error: {what}")
    return status


def run_hostile(report: Report, stack: IngestUnderTest, deadline: float, *, per_class: int | None = None) -> None:
    """Every hostile request; ``per_class``: at most that many per class and source (the small run)."""
    sent: Counter[tuple[str, str]] = Counter()
    for request in hostile_requests():
        if time.monotonic() > deadline:
            return
        if per_class is not None and sent[request.cls, request.source] >= per_class:
            continue
        sent[request.cls, request.source] += 1
        check(report, stack, request.cls, request.source, request.body, request.headers, request.query,
              must_reject=request.must_reject)


def run_schemathesis(report: Report, stack: IngestUnderTest, examples: int, deadline: float) -> None:
    """Requests generated from docs/openapi.json, per endpoint: as generated, then correctly signed."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_dict(json.loads((ROOT / "docs" / "openapi.json").read_text()))
    runs = [(result.ok(), mode) for result in schema.get_all_operations()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
    for index, (operation, mode) in enumerate(runs):
        # each endpoint and mode gets an equal share of the time left
        share = time.monotonic() + max(0.0, deadline - time.monotonic()) / (len(runs) - index)
        source = operation.path.rsplit("/", 1)[-1]
        send = _sender(report, stack, f"schemathesis {source} {mode.value}", source, share)
        test = settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
                        suppress_health_check=list(HealthCheck))(
            given(case=operation.as_strategy(generation_mode=mode))(send))
        with contextlib.suppress(Unsatisfiable, OutOfTime):
            test()


def _sender(report: Report, stack: IngestUnderTest, cls: str, source: str, deadline: float) -> Callable[[Any], None]:
    def send(case: Any) -> None:
        if time.monotonic() > deadline:
            raise OutOfTime
        body = _case_body(case)
        headers = {str(k): str(v) for k, v in (case.headers or {}).items()}
        headers.setdefault("content-type", case.media_type or "application/json")
        query = {str(k): str(v) for k, v in (case.query or {}).items()}
        check(report, stack, f"{cls} (as generated)", source, body, headers, query, must_reject=False)
        resigned = {**{k: v for k, v in headers.items() if k.lower() not in SIGNATURE_HEADERS},
                    **signed_headers(source, body)}
        query.pop("token", None)  # Streak: the token may also be in the query
        check(report, stack, f"{cls} (signed)", source, body, resigned, query, must_reject=False)

    return send


class OutOfTime(Exception):
    """Ends a hypothesis run at its share of the time (only the generate phase runs: nothing to shrink)."""


SIGNATURE_HEADERS = {"webhook-id", "webhook-timestamp", "webhook-signature", "x-streak-webhook-token",
                     "intuit-signature"}


def _case_body(case: Any) -> bytes:
    from schemathesis.core import NOT_SET

    body = case.body
    if body is NOT_SET or (body is None and case.media_type is None):
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str) and not (case.media_type or "").endswith("json"):
        return body.encode()
    return json.dumps(body, default=str).encode()


def run_parsers(report: Report, examples: int, deadline: float) -> None:
    """Arbitrary JSON documents and bytes through the parsers: a result or a WebhookRejectedError only."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from switchyard.envelopes import EVENT_TYPES, validate_envelope
    from switchyard.errors import WebhookRejectedError
    from switchyard.ingest import split_delivery
    from switchyard.systems.quickbooks.webhooks import parse_notification
    from switchyard.webhook_json import decode

    scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
               | st.text(max_size=40) | st.sampled_from(["2026-11-20T09:15:02Z", "0001-01-01T00:00:00+01:00",
                                                         "9999-12-31T23:59:59-01:00", "order.placed"]))
    documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                             | st.dictionaries(st.text(max_size=12) | st.sampled_from(
                                 ["type", "timestamp", "data", "Order", "eventNotifications", "realmId",
                                  "dataChangeEvent", "entities", "name", "id", "operation", "lastUpdated",
                                  "key", "lastUpdatedTimestamp", "specversion", "time", "intuitaccountid",
                                  "intuitentityid"]), inner, max_size=5), max_leaves=25)

    def expect_rejection_only(name: str, call: Callable[[], Any]) -> None:
        report.parser_cases[name] += 1
        try:
            call()
        except WebhookRejectedError:
            pass
        except Exception as exc:  # anything else would be a 500 at the edge
            report.parser_failures.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")

    limits = settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))

    decoder_deadline = time.monotonic() + max(0.0, deadline - time.monotonic()) / 2  # half the time each

    @limits
    @given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
    def decoder(raw: bytes) -> None:
        if time.monotonic() > decoder_deadline:
            raise OutOfTime
        expect_rejection_only("strict JSON decoder", lambda: decode(raw))

    @limits
    @given(document=documents, source=st.sampled_from(sorted(EVENT_TYPES)),
           event_type=st.sampled_from(sorted({t for types in EVENT_TYPES.values() for t in types})))
    def splitters(document: Any, source: str, event_type: str) -> None:
        if time.monotonic() > deadline:
            raise OutOfTime
        expect_rejection_only("envelope validators", lambda: validate_envelope(source, document))
        expect_rejection_only("envelope validators", lambda: validate_envelope(
            source, {"type": event_type, "timestamp": "2026-11-20T09:15:02Z", "data": document}))
        expect_rejection_only("QuickBooks notifications", lambda: parse_notification(document))
        expect_rejection_only("Streak deliveries", lambda: split_delivery(
            "streak", "object-array", document if isinstance(document, list) else [document],
            routes={}, event_type=event_type))
        expect_rejection_only("QuickBooks notifications", lambda: split_delivery(
            "quickbooks", "intuit", document, routes={"item.updated": {"f": "q"}, "item.created": {"f": "q"}}))

    with contextlib.suppress(OutOfTime):
        decoder()
    with contextlib.suppress(OutOfTime):
        splitters()


def fuzz(*, seconds: float = 300.0, examples: int = 150, hostile_per_class: int | None = None,
         out: Any = sys.stdout) -> Report:
    """Run every kind of request within ``seconds``; print and return the report."""
    started = time.monotonic()
    report = Report()
    # the parsers (no HTTP, fast) get a tenth of the time, the hostile classes up to half, schemathesis the rest
    run_parsers(report, examples * 5, started + seconds * 0.1)
    with IngestUnderTest() as stack:
        stack.queued()
        run_hostile(report, stack, started + seconds * 0.5, per_class=hostile_per_class)
        run_schemathesis(report, stack, examples, started + seconds)
    report.seconds = time.monotonic() - started
    print(report.render(), file=out)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m switchyard_local.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300.0, help="time budget of the whole run")
    parser.add_argument("--examples", type=int, default=150, help="generated requests per endpoint and mode")
    args = parser.parse_args(argv)
    return 0 if fuzz(seconds=args.seconds, examples=args.examples).ok else 1


if __name__ == "__main__":
    sys.exit(main())
