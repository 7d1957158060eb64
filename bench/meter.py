"""What one run on the local stack costs: AWS requests counted at moto's door, our handlers' CPU with
moto's share taken out, and each Streak call's time in flight.

* Every AWS request our process makes goes through moto's botocore stubber in the calling thread;
  wrapping it counts requests per service and operation (with the sizes DynamoDB and SQS bill by)
  and measures the thread CPU moto spends serving them.
* Every Lambda invocation goes through ``InProcessFunction.invoke``; wrapping it measures the thread
  CPU of the handler (ingest or worker), from which moto's CPU inside the same invocation is taken
  out. The vendor sandboxes serve from their own threads, so their CPU is never in this figure;
  the client side (httpx, JSON) is, as it is in Lambda. Work a handler hands to helper threads
  (``switchyard.concurrency``) is measured in those threads and added to the handler's.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

_local = threading.local()


@dataclass
class Meter:
    requests: Counter = field(default_factory=Counter)           # (service, operation) -> count
    role_requests: Counter = field(default_factory=Counter)      # role that made them -> AWS requests
    units: Counter = field(default_factory=Counter)              # billed units: sqs_request, dynamodb_wru, ...
    handler_cpu: Counter = field(default_factory=Counter)        # role -> CPU seconds, moto's share removed
    handler_wall: Counter = field(default_factory=Counter)       # role -> wall seconds of its invocations
    handler_gross_cpu: Counter = field(default_factory=Counter)  # role -> CPU seconds, moto's included
    invocations: Counter = field(default_factory=Counter)        # role -> invocations
    moto_cpu: Counter = field(default_factory=Counter)           # role it served (or "-") -> CPU seconds
    finished: dict[str, float] = field(default_factory=dict)     # event id -> time its worker invocation ended
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self._lock:
            for counter in (self.requests, self.role_requests, self.units, self.handler_cpu, self.handler_wall,
                            self.handler_gross_cpu, self.invocations, self.moto_cpu):
                counter.clear()
            self.finished.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": dict(self.requests), "role_requests": dict(self.role_requests),
                    "units": dict(self.units),
                    "handler_cpu": dict(self.handler_cpu), "handler_wall": dict(self.handler_wall),
                    "handler_gross_cpu": dict(self.handler_gross_cpu),
                    "invocations": dict(self.invocations), "moto_cpu": dict(self.moto_cpu)}

    # --- CPU per frame: a handler invocation or a moto request, nested in one thread -----------------
    # Each frame's own CPU is its thread CPU minus that of the frames nested in it, so a step Lambda
    # that moto's Step Functions engine runs inside a request is the step's, not moto's.

    @contextmanager
    def frame(self, label: str, *, helper: bool = False) -> Iterator[None]:
        stack = _local.__dict__.setdefault("frames", [])
        frame = [label, time.thread_time(), 0.0, time.monotonic()]
        stack.append(frame)
        try:
            yield
        finally:
            stack.pop()
            gross = time.thread_time() - frame[1]
            own = gross - frame[2]
            if stack:
                stack[-1][2] += gross
            served = next((f[0] for f in reversed(stack) if f[0] != "moto"), "-")
            with self._lock:
                if label == "moto":
                    self.moto_cpu[served] += own
                else:
                    self.handler_cpu[label] += own
                    if not helper:
                        self.handler_wall[label] += time.monotonic() - frame[3]
                        self.invocations[label] += 1

    # --- AWS requests (moto's stubber) ---------------------------------------------------------------

    def count_request(self, event_name: str, request: Any, response: Any, *, role: str | None) -> None:
        """Requests our handlers make, and the queue polling Lambda does for them (billed to the queue's
        owner); not the local harness's own (draining, listing executions, moto's engine invoking steps)."""
        _, service, operation = ([*event_name.split("."), "", ""])[:3]
        if role is None and (service, operation) not in (("sqs", "ReceiveMessage"), ("sqs", "DeleteMessageBatch")):
            return
        body = request.body or b""
        size = len(body) if isinstance(body, bytes | str) else 0
        try:
            content = response.content or b""
        except Exception:  # a streamed body: not one billed by size
            content = b""
        units: dict[str, float] = {}
        if service == "sqs":
            if operation == "ReceiveMessage" and b"ReceiptHandle" not in content:
                return  # Lambda's idle long polls: a fixed cost a month per queue, not an order's
            units["sqs_request"] = max(1, math.ceil(max(size, len(content)) / 65_536))
        elif service == "dynamodb":
            units.update(_dynamodb_units(operation, body, size, len(content)))
        elif service in ("secrets-manager", "secretsmanager"):
            units["secrets_manager_api_call"] = 1
        with self._lock:
            self.requests[(service, operation)] += 1
            self.role_requests[role or "lambda_service"] += 1
            for unit, amount in units.items():
                self.units[unit] += amount


def _dynamodb_units(operation: str, body: Any, size: int, answer: int) -> dict[str, float]:
    """On-demand request units from the wire sizes (JSON attribute names and values, a close upper
    bound of DynamoDB's item size): a write 1 WRU per KB, a read 1 RRU per 4 KB (half when eventual)."""
    try:
        request = json.loads(body) if body else {}
    except ValueError:
        request = {}
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        return {"dynamodb_wru": max(1, math.ceil(size / 1024))}
    if operation in ("GetItem", "Query", "Scan", "BatchGetItem"):
        rru = max(1, math.ceil(answer / 4096))
        return {"dynamodb_rru": rru if request.get("ConsistentRead") else rru / 2}
    if operation == "TransactWriteItems":
        return {"dynamodb_wru": 2 * max(len(request.get("TransactItems", [])), math.ceil(size / 1024))}
    return {}


_installed: Meter | None = None


def install() -> Meter:
    """Wrap moto's stubber and the in-process functions (once per process)."""
    global _installed
    if _installed is not None:
        return _installed
    from moto.core.botocore_stubber import BotocoreStubber
    from switchyard import concurrency
    from switchyard_local.functions import InProcessFunction

    meter = Meter()
    original_call = BotocoreStubber.__call__
    original_invoke = InProcessFunction.invoke

    def stubbed(self: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
        role = _current_role()
        with meter.frame("moto"):
            response = original_call(self, event_name, request, **kwargs)
        if response is not None:
            meter.count_request(event_name, request, response, role=role)
        return response

    def invoke(self: InProcessFunction, event: dict[str, Any]) -> Any:
        role = _role(self.code_dir.name)
        with meter.frame(role):
            result = original_invoke(self, event)
        if role == "worker":
            now = time.monotonic()
            failed = {item.get("itemIdentifier") for item in (result or {}).get("batchItemFailures", [])}
            for record in event.get("Records", []):
                if record.get("messageId") in failed:
                    continue
                event_id = record.get("messageAttributes", {}).get("event_id", {}).get("stringValue")
                if event_id:
                    meter.finished[event_id] = now
        return result

    def submit(call: Any, **kwargs: Any) -> Any:  # a handler's helper thread works for the handler's role
        role = _current_role()
        if role is None:
            return original_submit(call, **kwargs)

        def run() -> Any:
            with meter.frame(role, helper=True):
                return call()

        return original_submit(run, **kwargs)

    original_submit = concurrency._submit
    concurrency._submit = submit
    BotocoreStubber.__call__ = stubbed  # type: ignore[method-assign]
    InProcessFunction.invoke = invoke  # type: ignore[method-assign]
    _installed = meter
    return meter


def _current_role() -> str | None:
    return next((f[0] for f in reversed(_local.__dict__.get("frames", [])) if f[0] != "moto"), None)


def _role(code_folder: str) -> str:
    """functions/ingest, functions/flow_worker, functions/flow_steps."""
    return {"ingest": "ingest", "flow_steps": "steps"}.get(code_folder, "worker")
