"""The embedded local stack: what ``cdk deploy`` would create, on moto, with no AWS account.

1. synthesize the CDK app (the same code path as ``cdk synth``, layer dependencies not bundled);
2. deploy the untouched template through moto's CloudFormation (queues with redrive policies,
   tables, secrets, functions with resolved environments, event source mappings);
3. run the functions in-process, behind a front door emulating the HTTP API routes and pollers
   emulating the SQS event source mappings, all read from the template;
4. point every connection at a local vendor sandbox and give each source a signing secret.
"""

from __future__ import annotations

import copy
import dataclasses
import fcntl
import hashlib
import io
import json
import logging
import os
import pickle
import shutil
import sys
import threading
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from switchyard_cli.operations import peek_all

from switchyard_local.front_door import FrontDoor, Route
from switchyard_local.functions import InProcessFunction
from switchyard_local.pollers import QueuePoller
from switchyard_local.sandboxes.bng import BngSandbox
from switchyard_local.sandboxes.clarity import DEMO_ORDERS, ClaritySandbox
from switchyard_local.sandboxes.nopcommerce import NopCommerceSandbox
from switchyard_local.sandboxes.quickbooks import TOKEN_PATH, QuickBooksSandbox
from switchyard_local.sandboxes.salesforce import SalesforceSandbox, eventbridge_entries
from switchyard_local.sandboxes.streak import StreakSandbox
from switchyard_local.stepfunctions import (
    CallbackFixes,
    ExecutionStatusEvents,
    InProcessLambdas,
    register_state_machines,
)
from switchyard_local.table_access import TableAccessCheck

ROOT = Path(__file__).resolve().parents[2]
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
DEMO_SIGNING_SECRET = "whsec_c3dpdGNoeWFyZC1sb2NhbC1kZW1vLXNpZ25pbmcta2V5IQ=="
DEMO_STREAK_TOKEN = "streak-local-webhook-token"
DEMO_QBO_REALM = "9341453"
# what the demo shop sells, in the QuickBooks company too (SKU, name, unit price, quantity on hand)
DEMO_QBO_ITEMS = (
    ("DESK-STD-01", "Standing desk", 499.0, 40),
    ("ARM-MON-02", "Dual monitor arm", 89.0, 120),
    ("CHAIR-ERG-07", "Ergonomic chair", 329.0, 25),
    ("CBL-ORG-01", "Cable organiser", 12.5, 500),
)
DEMO_QBO_SERVICES = (("SHIPPING", "Shipping"), ("ROUNDING", "Rounding adjustment"), ("REFUND", "Refunds"))
# the Streak events Switchyard subscribes to, and the scope Streak registers them on
STREAK_SUBSCRIPTIONS = {"BOX_CHANGE_STAGE": "pipelineKey", "CONTACT_UPDATE": "teamKey"}
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


class FunctionLogs(io.TextIOBase):
    """Where the in-process functions write their (Powertools JSON) logs: kept in memory, so the
    demo and tests can read outcomes, and appended to a file when one is given."""

    def __init__(self, path: Path | None) -> None:
        self._file = open(path, "a") if path else None  # noqa: SIM115 (closed by close())
        self._lines: list[str] = []
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            if self._file:
                self._file.write(text)
            self._partial += text
            *complete, self._partial = self._partial.split("\n")
            self._lines.extend(line for line in complete if line.strip())
        return len(text)

    def flush(self) -> None:
        if self._file:
            self._file.flush()

    def close(self) -> None:
        super().close()  # flushes first
        if self._file:
            self._file.close()
            self._file = None

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            lines = list(self._lines)
        parsed = []
        for line in lines:
            try:
                parsed.append(json.loads(line))
            except ValueError:
                continue
        return parsed


@dataclass
class FlowResources:
    name: str
    queue_url: str
    dlq_url: str
    poller: QueuePoller


@dataclass
class LocalStack:
    stage: str = "dev"
    streak: StreakSandbox = field(default_factory=StreakSandbox)
    clarity: ClaritySandbox | None = None  # built with the signing secret below
    quickbooks: QuickBooksSandbox = field(default_factory=QuickBooksSandbox)
    nopcommerce: NopCommerceSandbox = field(default_factory=NopCommerceSandbox)
    bng: BngSandbox | None = None  # built with the signing secret below
    salesforce: SalesforceSandbox = field(default_factory=SalesforceSandbox)
    qbo_realm: str = DEMO_QBO_REALM
    signing_secret: str = DEMO_SIGNING_SECRET
    streak_token: str = DEMO_STREAK_TOKEN
    # Locally the functions share two cores with moto and the sandboxes: a request can wait far longer
    # between its rate-limit permit and its arrival than on a network, so windows are 1.5x longer here.
    env_overrides: dict[str, str] = field(default_factory=lambda: {"SWITCHYARD_RATE_LIMIT_TIME_SCALE": "0.67"})
    log_path: Path | None = None
    port: int = 0  # of the front door on 127.0.0.1 (0: any free port)
    # each function takes its own turns (switchyard_local.functions): one waiting on a slow vendor holds
    # up only itself, as in AWS; off, every invocation of every function takes turns
    concurrent_functions: bool = False

    def __post_init__(self) -> None:
        if self.clarity is None:
            self.clarity = ClaritySandbox(webhook_secret=self.signing_secret)
        if self.bng is None:
            self.bng = BngSandbox(webhook_secret=self.signing_secret)
        self.base_url: str | None = None
        self.flows: dict[str, FlowResources] = {}
        self.functions: dict[str, InProcessFunction] = {}
        self.front_door: FrontDoor | None = None
        self.sources: list[str] = []
        self._mock: Any = None
        self.logs: FunctionLogs | None = None
        self._servers: list[Any] = []
        self._poll_thread: threading.Thread | None = None
        self._stop_polling = threading.Event()
        self._secret_arns: dict[str, str] = {}
        self.connection_secret_arns: dict[str, str] = {}  # connection name -> its secret (created by the API)
        self._lambdas: InProcessLambdas | None = None
        self._callback_fixes: CallbackFixes | None = None
        self.execution_events: ExecutionStatusEvents | None = None  # EventBridge's, which moto does not send
        self.state_machines: dict[str, str] = {}  # flow -> state machine ARN
        self.table_access: TableAccessCheck | None = None  # the functions' table grants, enforced as IAM would

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> LocalStack:
        os.environ.update(FAKE_CREDENTIALS)
        # moto names each resource type its CloudFormation skips; _prepare_for_moto documents why
        warnings.filterwarnings("ignore", message="Tried to parse", category=UserWarning)
        logging.getLogger("moto").setLevel(logging.ERROR)
        # moto's Step Functions engine logs every Fail state it reaches as an error; the DLQ has the reason
        logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
        from moto import mock_aws
        from switchyard.aws import clients

        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))  # infra/ is a folder of the checkout, not an installed package
        from infra.synth import synthesize

        synth = _synthesized(self.stage, synthesize)
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        clients.reset()  # no botocore client may outlive the switch to moto
        for sandbox in self._sandboxes():
            if sandbox.base_url is None:
                sandbox.serve()
        self._seed_quickbooks()
        self._offer_partner_event_source()
        stack_id = self._deploy(synth)
        physical = self._physical_ids(stack_id)
        self.logs = FunctionLogs(self.log_path)
        _repoint_function_loggers(self.logs)
        self._build_functions(synth.template, physical)
        self.table_access = TableAccessCheck.from_template(synth.template, physical).activate()
        # Step Functions tasks invoke the same in-process functions the pollers and the front door use
        self._lambdas = InProcessLambdas({fn.function_name: fn for fn in self.functions.values()}).start()
        self._callback_fixes = CallbackFixes().start()  # a wait's failure keeps its cause; a missed heartbeat is named
        self.state_machines = register_state_machines(self.client("stepfunctions"), synth.template, physical, ACCOUNT,
                                                      REGION)
        self.execution_events = ExecutionStatusEvents.from_template(self.client("stepfunctions"), synth.template,
                                                                    physical, self.functions)
        self._build_routes(synth.template)
        self._build_pollers(synth.template, physical)
        self._configure_secrets(synth.template, physical)
        # the sandboxes post their webhooks to the front door, as the real systems would
        self.base_url = self.serve(port=self.port)
        self.subscribe_to_vendor_webhooks()
        self._relay_change_events()
        return self

    def stop(self) -> None:
        """Every part is stopped even when one fails: a moto mock left running would hand this process's next
        stack (or test) the resources of this one."""
        steps: list[Callable[[], object]] = [self._stop_polling.set]
        if self._poll_thread:
            steps.append(lambda: self._poll_thread.join(timeout=5) if self._poll_thread else None)
        steps += list(self._servers) + [sandbox.stop for sandbox in self._sandboxes() if sandbox is not None]
        if self._lambdas is not None:
            steps.append(self._lambdas.stop)
        if self._callback_fixes is not None:
            steps.append(self._callback_fixes.stop)
        if self.table_access is not None:
            steps.append(self.table_access.deactivate)
        if self._mock is not None:
            steps.append(self._mock.stop)
        if self.logs is not None:
            steps.append(self.logs.close)
        failures: list[BaseException] = []
        for step in steps:
            try:
                step()
            except Exception as exc:  # the rest must still stop; the first failure is raised
                failures.append(exc)
        self._servers, self._lambdas, self._callback_fixes, self._mock = [], None, None, None
        if failures:
            raise failures[0]

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- using it ------------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=REGION)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve the front door over HTTP (for curl); returns its base URL."""
        from switchyard_local.sandboxes.http import serve

        assert self.front_door is not None
        url, stop = serve(self.front_door, host=host, port=port)
        self._servers.append(stop)
        return url

    def run_pollers_in_background(self, interval: float = 0.2) -> None:
        def loop() -> None:
            while not self._stop_polling.is_set():
                if not self.poll_all():
                    self._stop_polling.wait(interval)

        self._poll_thread = threading.Thread(target=loop, name="sqs-pollers", daemon=True)
        self._poll_thread.start()

    def poll_all(self) -> int:
        ended = self.execution_events.poll() if self.execution_events is not None else 0
        return sum(flow.poller.poll_once() for flow in self.flows.values()) + ended

    def drain(self, timeout: float = 60.0, interval: float = 0.25) -> bool:
        """Run the pollers until every flow queue is empty (including delayed retries) and the
        sandboxes have no webhook left to send (their webhooks start new events)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.poll_all():
                continue
            if not self._sandboxes_quiet():
                continue
            if all(flow.poller.depth() == 0 for flow in self.flows.values()) and self._sandboxes_quiet():
                return True
            time.sleep(interval)
        return False

    def _sandboxes(self) -> list[Any]:
        return [self.streak, self.clarity, self.quickbooks, self.nopcommerce, self.bng, self.salesforce]

    # --- Salesforce Event Relay (issue 13): the org's change events reach the partner bus CDK declares ----------

    def _offer_partner_event_source(self) -> None:
        """Salesforce's side of Event Relay: the partner event source exists before the stack's bus is made
        (CloudFormation, in AWS and in moto, refuses a partner bus for a source that is not there)."""
        from switchyard_local.partner_buses import allow_partner_buses

        allow_partner_buses()
        self.salesforce.aws_account, self.salesforce.region = ACCOUNT, REGION
        self.salesforce.create_partner_event_source(self.client("events"))
        # the price book holds what the demo shop and the sample webhooks sell, so their orders become Orders
        samples = [json.loads(path.read_text())["data"] for path in sorted(SAMPLES_DIR.glob("clarity_order_*.json"))]
        skus = {item["sku"]: item for order in (*DEMO_ORDERS, *samples) for item in order["lineItems"]}
        for sku, item in sorted(skus.items()):
            if not self.salesforce.find("Product2", ProductCode=sku):
                self.salesforce.add_product(sku, item["name"], item["unitPrice"], external_id=sku)

    def _relay_change_events(self) -> None:
        """Every change event the org sandbox emits goes onto the partner bus, whose rule (from the template)
        transforms it into the flow's queue message: the deployed path, not a shortcut to the queue."""
        events = self.client("events")
        bus = self.salesforce.partner_event_source

        def relay(event: Any) -> None:
            answer = events.put_events(Entries=eventbridge_entries([event], bus))
            if answer["FailedEntryCount"]:
                raise RuntimeError(f"the partner bus refused a change event: {answer['Entries']}")

        self.salesforce.event_sink = relay

    def _sandboxes_quiet(self) -> bool:
        return (self.streak.wait_for_webhooks(timeout=0.5) and self.clarity.wait_for_webhooks(timeout=0.5)
                and self.quickbooks.wait_for_webhooks(timeout=0.5) and self.bng.wait_for_webhooks(timeout=0.5)
                and self.running_executions() == 0)

    def running_executions(self) -> int:
        """Executions that still run on their own: one parked at a wait for an outside answer (a shipment that
        comes in days) counts as settled until somebody answers it."""
        sfn = self.client("stepfunctions")
        parked = self.parked_executions()
        return sum(1 for arn in self.state_machines.values()
                   for summary in _listed_executions(sfn, arn, statusFilter="RUNNING") if summary["name"] not in parked)

    def parked_executions(self) -> set[str]:
        """The names of executions waiting at a ``wait_for`` state: a stored task token, no outcome yet."""
        if self.table_access is None:
            return set()
        parked = set()
        pages = self.client("dynamodb").get_paginator("scan").paginate(
            TableName=self.table_access.table_name, FilterExpression="begins_with(id, :wait)",
            ExpressionAttributeValues={":wait": {"S": "wait#"}})
        for page in pages:
            for item in page["Items"]:
                if "token" in item and "execution" in item and "outcome" not in item:
                    parked.add(item["execution"]["S"])
        return parked

    def executions(self, flow: str) -> list[dict[str, Any]]:
        """A state-machine flow's executions: ``{"name", "status", "output"|None}``, oldest first (every page)."""
        sfn = self.client("stepfunctions")
        found = []
        # listed newest first; reversed, a stable sort keeps the order of starts within one millisecond
        for summary in reversed(_listed_executions(sfn, self.state_machines[flow])):
            described = sfn.describe_execution(executionArn=summary["executionArn"])
            output = described.get("output")
            found.append({"name": summary["name"], "status": described["status"],
                          "output": json.loads(output) if output else None, "started": summary["startDate"]})
        return sorted(found, key=lambda e: e["started"])

    def _seed_quickbooks(self) -> None:
        """The demo company: connected (OAuth consent done) and selling what the demo shop sells."""
        self._qbo_tokens = self.quickbooks.connect_realm(self.qbo_realm)
        for sku, name, price, quantity in DEMO_QBO_ITEMS:
            self.quickbooks.seed_item(self.qbo_realm, name, sku, qty_on_hand=quantity, unit_price=price)
        for sku, name in DEMO_QBO_SERVICES:
            self.quickbooks.seed_item(self.qbo_realm, name, sku, qty_on_hand=0, unit_price=0, type="Service")
        for sku, name, price, quantity in DEMO_QBO_ITEMS:
            self.nopcommerce.seed_product(name, sku, quantity, price=price)
        for path in sorted(SAMPLES_DIR.glob("nop_order_*.json")):  # the shop's orders behind the sample webhooks
            self.seed_shop_order(json.loads(path.read_text())["data"])

    def seed_shop_order(self, data: dict[str, Any]) -> dict[str, Any]:
        """Put the order a nopCommerce webhook describes into the shop, as checkout stored it before the
        webhook is sent: the order with its items, customer and addresses (the order-to-cash write-back
        reads and updates it through the Web API; the poller reads all of it)."""
        return self.nopcommerce.place_order(data)

    def subscribe_to_vendor_webhooks(self) -> None:
        """What an operator does once per account: register Switchyard's URLs with Streak and
        Clarity (Streak: one URL per event type, with the shared token)."""
        assert self.base_url is not None
        self.clarity.webhook_url = self.webhook_url(self.base_url, "clarity")
        self.quickbooks.webhook_url = self.webhook_url(self.base_url, "quickbooks")
        self.bng.webhook_url = self.webhook_url(self.base_url, "bng")
        import httpx

        with httpx.Client(base_url=self.streak.base_url, auth=(self.streak.api_key, "")) as streak:
            for event, scope in STREAK_SUBSCRIPTIONS.items():
                key = self.streak.pipeline.key if scope == "pipelineKey" else self.streak.team_key
                target = f"{self.webhook_url(self.base_url, 'streak')}?event={event}"
                streak.post("/api/v2/webhooks", params={scope: key},
                            json={"event": event, "targetUrl": target, "token": self.streak_token}).raise_for_status()

    def poll_source(self, source: str, *, grace_seconds: float | None = None) -> dict[str, Any]:
        """Run the source's poller once, as its schedule does (``functions/poller``, deployed from the
        template); ``grace_seconds=0`` queues what the webhooks missed without the sweep's grace period.
        Returns the run's summary (pages read, events queued, recovered, ...)."""
        pollers = [fn for fn in self.functions.values()
                   if fn.environment.get("SWITCHYARD_SOURCE") == source and "SWITCHYARD_POLL" in fn.environment]
        if not pollers:
            raise KeyError(f"no poller for source {source!r}: its delivery in flows.yaml is push")
        (poller,) = pollers
        event = {} if grace_seconds is None else {"grace_seconds": grace_seconds}
        result: dict[str, Any] = poller.invoke(event)
        return result

    def dead_letters(self, flow: str) -> list[dict[str, Any]]:
        """Everything in a flow's DLQ, read without consuming it."""
        letters = []
        for message in peek_all(self.client("sqs"), self.flows[flow].dlq_url):
            try:
                letters.append(json.loads(message["Body"]))
            except ValueError:
                letters.append({"raw": message["Body"]})
        return letters

    def outcomes(self, flow: str | None = None) -> list[dict[str, Any]]:
        """What each flow did with each event, from the workers' logs: ``{"flow", "event_type",
        "event_id", "outcome"}`` (created, moved, echo, stale, filtered, ..., dead_lettered)."""
        found = []
        for record in (self.logs.records() if self.logs else []):
            if record.get("message") not in ("delivered", "dead-lettered"):
                continue
            if flow is not None and record.get("flow") != flow:
                continue
            outcome = record.get("outcome", "dead_lettered")
            if record.get("duplicate"):
                outcome = "duplicate"
            found.append({"flow": record.get("flow"), "event_type": record.get("event_type"),
                          "event_id": record.get("event_id"), "outcome": outcome})
        return found

    def webhook_url(self, base_url: str, source: str) -> str:
        return f"{base_url.rstrip('/')}/webhooks/{source}"

    # --- deployment ----------------------------------------------------------------------------

    def _deploy(self, synth: Any) -> str:
        cfn, s3, ssm = self.client("cloudformation"), self.client("s3"), self.client("ssm")
        ssm.put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="30", Type="String", Overwrite=True)
        for asset in (synth.assets_manifest or {}).get("files", {}).values():
            source = synth.assembly_dir / asset["source"]["path"]
            for destination in asset["destinations"].values():
                bucket = _substitute(destination["bucketName"])
                key = _substitute(destination["objectKey"])
                _ensure_bucket(s3, bucket)
                s3.put_object(Bucket=bucket, Key=key, Body=_zip(source) if source.is_dir() else source.read_bytes())
        template_body = json.dumps(self._prepare_for_moto(synth.stack_name, synth.template))
        bucket = f"cdk-hnb659fds-assets-{ACCOUNT}-{REGION}"
        _ensure_bucket(s3, bucket)
        s3.put_object(Bucket=bucket, Key="local-stack/template.json", Body=template_body.encode())
        response = cfn.create_stack(
            StackName=synth.stack_name,
            TemplateURL=f"https://{bucket}.s3.amazonaws.com/local-stack/template.json",
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        status = cfn.describe_stacks(StackName=response["StackId"])["Stacks"][0]["StackStatus"]
        if status != "CREATE_COMPLETE":
            raise RuntimeError(f"local deploy of {synth.stack_name} ended in {status}")
        return response["StackId"]

    def _prepare_for_moto(self, stack_name: str, template: dict[str, Any]) -> dict[str, Any]:
        """The template as moto's CloudFormation can run it, changed in three documented ways only:
        secrets (unsupported there) are created through the API and their ARNs put in place of
        their references; monitoring and HTTP API resources (alarms, dashboards, topic policies,
        ApiGatewayV2: emulated by the front door) are left out, with whatever refers to them; KMS keys
        lose their tags (moto reads CloudFormation's Key/Value tags as the KMS API's TagKey/TagValue)."""
        secrets = self.client("secretsmanager")
        resources = dict(template["Resources"])
        replacements: dict[str, str] = {}
        for logical_id, resource in list(resources.items()):
            if resource["Type"] == "AWS::SecretsManager::Secret":
                props = resource.get("Properties", {})
                # tagged with its role, so tools find it without the template (switchyard setup --check)
                tag = str((resource.get("Metadata") or {}).get("switchyard:secret", ""))
                created = secrets.create_secret(Name=f"{stack_name}-{logical_id}",
                                                SecretString=props.get("SecretString", "{}"),
                                                Tags=[{"Key": "switchyard:secret", "Value": tag},
                                                      {"Key": "switchyard:stack", "Value": stack_name}])
                replacements[logical_id] = created["ARN"]
                self._secret_arns[logical_id] = created["ARN"]
                del resources[logical_id]
        for logical_id, resource in list(resources.items()):
            if resource["Type"] == "AWS::KMS::Key" and "Tags" in resource.get("Properties", {}):
                resources[logical_id] = {**resource, "Properties": {
                    k: v for k, v in resource["Properties"].items() if k != "Tags"}}
        dropped = {lid for lid, r in resources.items() if r["Type"].startswith(_UNSUPPORTED_PREFIXES)}
        while True:  # drop whatever depends on something dropped (outputs too)
            more = {lid for lid, r in resources.items() if lid not in dropped and _refers_to(r, dropped)}
            if not more:
                break
            dropped |= more
        prepared = {**template, "Resources": {lid: r for lid, r in resources.items() if lid not in dropped}}
        prepared["Outputs"] = {k: v for k, v in template.get("Outputs", {}).items() if not _refers_to(v, dropped)}
        for lid in replacements:
            for kept in prepared["Resources"].values():
                if isinstance(kept.get("DependsOn"), list) and lid in kept["DependsOn"]:
                    kept["DependsOn"] = [d for d in kept["DependsOn"] if d != lid]
        return _replace_refs(prepared, replacements)

    def _physical_ids(self, stack_id: str) -> dict[str, str]:
        cfn = self.client("cloudformation")
        resources = cfn.list_stack_resources(StackName=stack_id)["StackResourceSummaries"]
        return {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in resources}

    def _build_functions(self, template: dict[str, Any], physical: dict[str, str]) -> None:
        lam = self.client("lambda")
        base_env = {**FAKE_CREDENTIALS}
        for logical_id, resource in _resources(template, "AWS::Lambda::Function"):
            code = (resource.get("Metadata") or {}).get("switchyard:code")
            if not code:
                continue  # CDK's own helper functions (e.g. log retention) have no local code
            config = lam.get_function_configuration(FunctionName=physical[logical_id])
            environment = dict(config.get("Environment", {}).get("Variables", {}))
            environment.update(self.env_overrides)
            self.functions[logical_id] = InProcessFunction(
                logical_id=logical_id,
                function_name=config["FunctionName"],
                arn=config["FunctionArn"],
                code_dir=ROOT / code,
                handler=resource["Properties"]["Handler"],
                environment=environment,
                timeout_seconds=int(config.get("Timeout", 30)),
                memory_mb=int(config.get("MemorySize", 128)),
                base_environment=base_env,
                log_stream=self.logs,
                **({"lock": threading.RLock()} if self.concurrent_functions else {}),
            )

    def _build_routes(self, template: dict[str, Any]) -> None:
        integrations = dict(_resources(template, "AWS::ApiGatewayV2::Integration"))
        routes = []
        for _logical_id, resource in _resources(template, "AWS::ApiGatewayV2::Route"):
            method, path = resource["Properties"]["RouteKey"].split(" ", 1)
            integration_id = _ref_in(resource["Properties"]["Target"])
            uri = integrations[integration_id]["Properties"]["IntegrationUri"]
            function_id = uri["Fn::GetAtt"][0]
            routes.append(Route(method=method, path=path, function=self.functions[function_id]))
        self.front_door = FrontDoor(routes)

    def _build_pollers(self, template: dict[str, Any], physical: dict[str, str]) -> None:
        lam, sqs = self.client("lambda"), self.client("sqs")
        queues = dict(_resources(template, "AWS::SQS::Queue"))
        for logical_id, resource in _resources(template, "AWS::Lambda::EventSourceMapping"):
            props = resource["Properties"]
            queue_id = props["EventSourceArn"]["Fn::GetAtt"][0]
            function_id = props["FunctionName"]["Ref"]
            queue_url = physical[queue_id]
            queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
                "Attributes"]["QueueArn"]
            # moto's mappings would invoke inside send_message; our pollers replace them
            for mapping in lam.list_event_source_mappings(EventSourceArn=queue_arn)["EventSourceMappings"]:
                lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
            del logical_id
            queue_meta = queues[queue_id].get("Metadata") or {}
            flow = queue_meta.get("switchyard:flow", queue_id)
            dlq_id = _ref_in(queues[queue_id]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
            self.flows[flow] = FlowResources(
                name=flow,
                queue_url=queue_url,
                dlq_url=physical[dlq_id],
                poller=QueuePoller(
                    sqs=sqs, queue_url=queue_url, queue_arn=queue_arn, function=self.functions[function_id],
                    batch_size=int(props.get("BatchSize", 10)),
                    report_batch_item_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
                    region=REGION,
                ),
            )

    def _webhook_credentials(self) -> dict[str, str]:
        """Signature scheme -> what the local senders (sandboxes, demo, tests) sign or authenticate with."""
        return {"standard-webhooks": self.signing_secret, "shared-token": self.streak_token,
                "intuit-signature": self.quickbooks.verifier_token}

    def _connection_secrets(self) -> dict[str, Callable[[], dict[str, Any]]]:
        """Registered system -> its sandbox's connection secret, as an operator would put it."""
        return {
            "streak": lambda: {"base_url": self.streak.base_url, "api_key": self.streak.api_key,
                               "team_key": self.streak.team_key, "pipeline_key": self.streak.pipeline.key},
            # OAuth2 client credentials, as in production
            "clarity": lambda: {"base_url": self.clarity.base_url, "client_id": self.clarity.client_id,
                                "client_secret": self.clarity.client_secret},
            # the first refresh token of the consent flow
            "quickbooks": lambda: {"base_url": self.quickbooks.base_url,
                                   "token_url": f"{self.quickbooks.base_url}{TOKEN_PATH}",
                                   "client_id": self.quickbooks.client_id,
                                   "client_secret": self.quickbooks.client_secret,
                                   "realm_id": self.qbo_realm, "refresh_token": self._qbo_tokens["refresh_token"]},
            "nopcommerce": lambda: {"base_url": self.nopcommerce.base_url, "email": self.nopcommerce.api_email,
                                    "password": self.nopcommerce.api_password},
            "bng": lambda: {"base_url": self.bng.base_url, "api_key": self.bng.api_key,
                            "api_prefix": self.bng.api_prefix},
            # client credentials on the org's My Domain
            "salesforce": lambda: {"base_url": self.salesforce.base_url, "client_id": self.salesforce.client_id,
                                   "client_secret": self.salesforce.client_secret},
        }

    def _configure_secrets(self, template: dict[str, Any], physical: dict[str, str]) -> None:
        """Every source and connection secret the template declares, filled from the catalog and the registry:
        the source's signature scheme says the secret's key, the connection's system which sandbox it reaches."""
        from switchyard import registry
        from switchyard.catalog import load_catalog
        from switchyard.signatures import CORE_SCHEMES

        catalog, schemes = load_catalog(), registry.signature_schemes(CORE_SCHEMES)
        credentials, connection_secrets = self._webhook_credentials(), self._connection_secrets()
        secrets = self.client("secretsmanager")
        for logical_id, resource in _resources(template, "AWS::SecretsManager::Secret"):
            kind, _, name = str((resource.get("Metadata") or {}).get("switchyard:secret", "")).partition(":")
            if kind == "source":
                self.sources.append(name)
                signature = catalog.sources[name].signature
                value: dict[str, Any] = {schemes[signature].secret_key: [credentials[signature]]}
            elif kind == "connection":
                system = catalog.connections[name].system
                if system not in connection_secrets:
                    raise LookupError(f"the local stack has no sandbox for system {system!r} (connection {name!r}): "
                                      "add one under local/switchyard_local/sandboxes/ and its secret here")
                value = connection_secrets[system]()
            else:
                continue
            secret_id = self._secret_arns.get(logical_id) or physical[logical_id]
            secrets.put_secret_value(SecretId=secret_id, SecretString=json.dumps(value))
            if kind == "connection":
                self.connection_secret_arns[name] = secret_id


def _listed_executions(sfn: Any, state_machine_arn: str, **filters: Any) -> list[dict[str, Any]]:
    """Every execution summary of a state machine: ListExecutions answers 100 at a time with a nextToken."""
    summaries: list[dict[str, Any]] = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn, **filters):
        summaries.extend(page["executions"])
    return summaries


def _repoint_function_loggers(logs: FunctionLogs) -> None:
    """Powertools loggers live as long as the process and keep the stream they were created with: a stack
    started after another one in the same process (tests) must take over the earlier stack's handlers."""
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)] + [logging.getLogger()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and isinstance(handler.stream, FunctionLogs):
                handler.setStream(logs)


_SYNTHESIZED: dict[str, Any] = {}  # stage -> SynthResult, kept for the process
_SYNTH_LOCK = threading.Lock()


def _synthesized(stage: str, synthesize: Callable[..., Any]) -> Any:
    """The stage's synthesized app, synthesized once per process and kept on disk for the next process: the
    code it is built from does not change while the processes run, and synthesis is the slowest part of a
    start (8 to 30 s here), paid again by every stack a test session, each test worker or the chaos run
    starts. Each caller gets its own copy of the template."""
    with _SYNTH_LOCK:
        cached = _SYNTHESIZED.get(stage)
        if cached is None:
            cached = _SYNTHESIZED[stage] = _synthesized_on_disk(stage, synthesize)
    return dataclasses.replace(cached, template=copy.deepcopy(cached.template))


SYNTH_CACHE = ROOT / ".local-stack" / "synth"
# everything synthesis reads: the CDK app, the library and handlers it bundles, the flows and mappings, the
# CDK context, the locks whose hash is part of the layer's asset
_SYNTH_INPUTS = ("infra", "shared", "functions", "requirements", "cdk.json")


def synth_inputs_digest(stage: str) -> str:
    """A digest of every file synthesis reads (and the CDK library's version): the key of a kept synthesis."""
    digest = hashlib.sha256(f"{stage}\0{version('aws-cdk-lib')}\0".encode())
    for name in _SYNTH_INPUTS:
        top = ROOT / name
        files = [top] if top.is_file() else sorted(
            path for path in top.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc")
        for path in files:
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:24]


def _synthesized_on_disk(stage: str, synthesize: Callable[..., Any]) -> Any:
    """The synthesis kept for these exact inputs, made once under a file lock: test workers starting their
    stacks at the same moment wait for one synthesis instead of running one each."""
    key = synth_inputs_digest(stage)
    SYNTH_CACHE.mkdir(parents=True, exist_ok=True)
    folder, kept = SYNTH_CACHE / f"{stage}-{key}", SYNTH_CACHE / f"{stage}-{key}.pickle"
    with open(SYNTH_CACHE / f"{stage}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if kept.is_file() and folder.is_dir():  # the assembly the deploy uploads is still there
            return pickle.loads(kept.read_bytes())
        for stale in SYNTH_CACHE.glob(f"{stage}-*"):  # kept for inputs that changed since
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        result = synthesize(stage, bundle_dependencies=False, outdir=str(folder))
        partial = kept.with_suffix(".partial")
        partial.write_bytes(pickle.dumps(result))
        partial.replace(kept)  # whole or absent: a synthesis that failed half-way is never read
        return result


_UNSUPPORTED_PREFIXES = ("AWS::CloudWatch::", "AWS::ApiGatewayV2::", "AWS::SNS::TopicPolicy")


def _refers_to(node: Any, logical_ids: set[str]) -> bool:
    if isinstance(node, dict):
        if node.get("Ref") in logical_ids:
            return True
        get_att = node.get("Fn::GetAtt")
        if isinstance(get_att, list) and get_att and get_att[0] in logical_ids:
            return True
        depends = node.get("DependsOn")
        depends = depends if isinstance(depends, list) else [depends]
        if logical_ids.intersection(d for d in depends if isinstance(d, str)):
            return True
        return any(_refers_to(v, logical_ids) for v in node.values())
    if isinstance(node, list):
        return any(_refers_to(v, logical_ids) for v in node)
    return False


def _replace_refs(node: Any, arns: dict[str, str]) -> Any:
    if isinstance(node, dict):
        if len(node) == 1 and node.get("Ref") in arns:
            return arns[node["Ref"]]
        return {k: _replace_refs(v, arns) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_refs(v, arns) for v in node]
    return node


def _resources(template: dict[str, Any], kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [(lid, r) for lid, r in template.get("Resources", {}).items() if r.get("Type") == kind]


def _ref_in(value: Any) -> str:
    """The logical id referenced by Ref / Fn::GetAtt / Fn::Join(["integrations/", Ref])."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
        if "Fn::Join" in value:
            for part in value["Fn::Join"][1]:
                if isinstance(part, dict):
                    return _ref_in(part)
    raise ValueError(f"no reference in {value!r}")


def _substitute(text: str) -> str:
    return (text.replace("${AWS::AccountId}", ACCOUNT).replace("${AWS::Region}", REGION)
            .replace("${AWS::Partition}", "aws"))


def _ensure_bucket(s3: Any, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:
        s3.create_bucket(Bucket=bucket)


def _zip(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()
