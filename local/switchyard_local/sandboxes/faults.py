"""Fault injection shared by every vendor sandbox: errors, 429s, latency and client timeouts.

A sandbox calls ``FaultInjector.apply(request)`` before handling each API request; a returned
response short-circuits the request, ``None`` means "handle it normally". A write chosen to be
answered late is marked on the request (``ANSWER_LATE_KEY``): ``SandboxApp`` carries it out at once
and holds the answer back, so the client times out although the write happened.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request, Response

from switchyard_local.sandboxes.http import ANSWER_LATE_KEY, json_response

ErrorBodyFactory = Callable[[str], Any]
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
INJECTED_LOG_SIZE = 100_000


@dataclass(frozen=True)
class FaultPlan:
    """Probabilistic faults applied to every API request (all off by default)."""

    error_rate: float = 0.0
    error_status: int = 503
    latency_ms: int = 0
    rate_limit_rate: float = 0.0
    retry_after_seconds: int = 1
    timeout_rate: float = 0.0
    timeout_seconds: float = 30.0
    # writes carried out at once but answered this late (after the client gave up)
    late_answer_rate: float = 0.0
    late_answer_seconds: float = 12.0
    # path prefixes never held past the client timeout nor answered late (other faults still apply)
    slow_spared_paths: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("error_rate", "rate_limit_rate", "timeout_rate", "late_answer_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        if not 400 <= self.error_status <= 599:
            raise ValueError(f"error_status must be a 4xx/5xx status, got {self.error_status!r}")
        for name in ("latency_ms", "retry_after_seconds", "timeout_seconds", "late_answer_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultPlan:
        """Build a plan from JSON-like data, rejecting unknown keys (typos must not pass silently)."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault plan keys: {', '.join(unknown)}")
        if "slow_spared_paths" in data:
            data = {**data, "slow_spared_paths": tuple(data["slow_spared_paths"])}
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (lists, not tuples), as the admin endpoints answer it."""
        return {**dataclasses.asdict(self), "slow_spared_paths": list(self.slow_spared_paths)}


@dataclass(frozen=True)
class QueuedFault:
    """One deterministic failure queued by ``FaultInjector.fail_next``."""

    status: int
    retry_after: int | None = None


class FaultInjector:
    """Holds the current ``FaultPlan`` and a queue of deterministic failures, under a lock."""

    def __init__(self, error_body: ErrorBodyFactory, plan: FaultPlan | None = None) -> None:
        self._error_body = error_body
        self._lock = threading.Lock()
        self._queue: deque[QueuedFault] = deque()
        self._plan = FaultPlan()
        self._rng = random.Random()
        self._late_rng = random.Random()
        self._injected: deque[tuple[float, str, str, str, str]] = deque(maxlen=INJECTED_LOG_SIZE)
        self.set_plan(plan or FaultPlan())

    @property
    def plan(self) -> FaultPlan:
        return self._plan

    def set_plan(self, plan: FaultPlan) -> None:
        """Replace the probabilistic plan; re-seeds the random source so seeded runs repeat."""
        with self._lock:
            self._plan = plan
            self._rng = random.Random(plan.seed)
            # its own source, so adding late answers leaves the other faults' seeded sequence as it was
            self._late_rng = random.Random(None if plan.seed is None else f"late-answer:{plan.seed}")

    def fail_next(self, n: int, status: int = 503, retry_after: int | None = None) -> None:
        """Make the next ``n`` requests fail with ``status`` (plus ``Retry-After`` when given)."""
        if n < 0:
            raise ValueError("n must not be negative")
        with self._lock:
            self._queue.extend(QueuedFault(status, retry_after) for _ in range(n))

    def clear(self) -> None:
        """Turn every fault off and drop queued failures and the log of injected faults."""
        with self._lock:
            self._queue.clear()
            self._injected.clear()
        self.set_plan(FaultPlan())

    def configure(self, data: Mapping[str, Any]) -> None:
        """Apply an admin payload: FaultPlan keys plus optional ``fail_next: {n, status, retry_after}``."""
        data = dict(data)
        queued = data.pop("fail_next", None)
        plan = FaultPlan.from_dict(data)
        if queued is not None:
            if not isinstance(queued, Mapping):
                raise ValueError("fail_next must be an object like {'n': 2, 'status': 503}")
            self.fail_next(int(queued.get("n", 1)), int(queued.get("status", 503)), queued.get("retry_after"))
        self.set_plan(plan)

    def apply(self, request: Request) -> Response | None:
        """Sleep for configured latency, then return a fault response or None to proceed.

        Only late answers depend on ``request`` (writes only); a write that proceeds may be marked to be
        answered late (see ``answer_late``).
        """
        plan, queued, roll = self._draw(request.method in WRITE_METHODS)
        if plan.slow_spared_paths and request.path.startswith(plan.slow_spared_paths):
            roll["timeout"] = roll["late_answer"] = 1.0
        if plan.latency_ms:
            time.sleep(plan.latency_ms / 1000)
        if queued is not None:
            self._note(request, f"queued {queued.status}")
            return self._fault_response(queued.status, queued.retry_after)
        if roll["timeout"] < plan.timeout_rate:
            # Sleep, then answer normally: the client gives up but the server still did the
            # work, which is exactly the case idempotent retries must survive.
            self._note(request, "timeout")
            time.sleep(plan.timeout_seconds)
            return None
        if roll["rate_limit"] < plan.rate_limit_rate:
            self._note(request, "429")
            return self._fault_response(429, plan.retry_after_seconds)
        if roll["error"] < plan.error_rate:
            self._note(request, str(plan.error_status))
            return self._fault_response(plan.error_status, None)
        if roll["late_answer"] < plan.late_answer_rate:
            self._note(request, "late_answer")
            request.environ[ANSWER_LATE_KEY] = plan.late_answer_seconds
        return None

    def injected_log(self) -> list[tuple[float, str, str, str, str]]:
        """Every fault injected since the last ``clear`` (the latest ``INJECTED_LOG_SIZE``): ``(time, kind,
        method, path, start of the body)``, so a run can tell which request met which fault."""
        with self._lock:
            return list(self._injected)

    def injected_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, kind, *_rest in self.injected_log():
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def _note(self, request: Request, kind: str) -> None:
        # only JSON bodies: reading a form body here would leave request.form empty for the sandbox
        readable = request.method in WRITE_METHODS and request.mimetype == "application/json"
        body = request.get_data(cache=True)[:160].decode("utf-8", "replace") if readable else ""
        with self._lock:
            self._injected.append((time.time(), kind, request.method, request.full_path.rstrip("?"), body))

    def _draw(self, is_write: bool) -> tuple[FaultPlan, QueuedFault | None, dict[str, float]]:
        # Always draw all three numbers so a seeded sequence does not depend on which faults fire.
        with self._lock:
            queued = self._queue.popleft() if self._queue else None
            roll = {name: self._rng.random() for name in ("timeout", "rate_limit", "error")}
            roll["late_answer"] = self._late_rng.random() if is_write else 1.0
            return self._plan, queued, roll

    def _fault_response(self, status: int, retry_after: int | None) -> Response:
        message = "Rate limit exceeded" if status == 429 else HTTP_STATUS_CODES.get(status, "Injected fault")
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return json_response(self._error_body(message), status=status, headers=headers)
