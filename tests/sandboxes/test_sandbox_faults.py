"""Unit tests for the vendor-agnostic fault injector used by the local sandboxes."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from switchyard_local.sandboxes.faults import FaultInjector, FaultPlan
from switchyard_local.sandboxes.http import ANSWER_LATE_KEY
from switchyard_local.sandboxes.streak import StreakSandbox
from werkzeug.wrappers import Request


def _error_body(message: str) -> dict:
    return {"ok": False, "message": message}


def _request() -> Request:
    return Request.from_values(path="/api/thing", method="POST")


def _statuses(injector: FaultInjector, count: int) -> list[int | None]:
    responses = (injector.apply(_request()) for _ in range(count))
    return [None if response is None else response.status_code for response in responses]


@pytest.fixture
def injector() -> FaultInjector:
    return FaultInjector(error_body=_error_body)


def test_fault_plan_defaults_inject_nothing(injector: FaultInjector) -> None:
    assert _statuses(injector, 20) == [None] * 20


@pytest.mark.parametrize(
    "kwargs",
    [{"error_rate": 1.5}, {"rate_limit_rate": -0.1}, {"error_status": 200}, {"latency_ms": -1}],
)
def test_fault_plan_invalid_values_raise_value_error(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FaultPlan(**kwargs)


def test_fault_plan_from_dict_unknown_key_raises_value_error() -> None:
    with pytest.raises(ValueError, match="error_rat"):
        FaultPlan.from_dict({"error_rat": 1})


def test_fault_plan_from_dict_round_trips_to_dict() -> None:
    plan = FaultPlan(error_rate=0.5, seed=7)
    assert FaultPlan.from_dict(plan.to_dict()) == plan


def test_fail_next_two_503s_then_proceeds(injector: FaultInjector) -> None:
    injector.fail_next(2, 503)
    assert _statuses(injector, 3) == [503, 503, None]


def test_fail_next_with_retry_after_sets_header_and_body(injector: FaultInjector) -> None:
    injector.fail_next(1, status=429, retry_after=7)
    response = injector.apply(_request())
    assert response is not None
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.get_json() == {"ok": False, "message": "Rate limit exceeded"}


def test_fail_next_without_retry_after_omits_header(injector: FaultInjector) -> None:
    injector.fail_next(1, status=500)
    response = injector.apply(_request())
    assert response is not None
    assert "Retry-After" not in response.headers
    assert response.get_json() == {"ok": False, "message": "Internal Server Error"}


def test_rate_limit_rate_one_returns_429_with_retry_after(injector: FaultInjector) -> None:
    injector.set_plan(FaultPlan(rate_limit_rate=1.0, retry_after_seconds=3))
    response = injector.apply(_request())
    assert response is not None
    assert (response.status_code, response.headers["Retry-After"]) == (429, "3")


def test_error_rate_one_returns_configured_status(injector: FaultInjector) -> None:
    injector.set_plan(FaultPlan(error_rate=1.0, error_status=502))
    assert _statuses(injector, 3) == [502, 502, 502]


def test_latency_delays_every_request(injector: FaultInjector) -> None:
    injector.set_plan(FaultPlan(latency_ms=80))
    started = time.monotonic()
    assert injector.apply(_request()) is None
    assert time.monotonic() - started >= 0.075


def test_timeout_rate_one_sleeps_then_proceeds(injector: FaultInjector) -> None:
    injector.set_plan(FaultPlan(timeout_rate=1.0, timeout_seconds=0.1))
    started = time.monotonic()
    assert injector.apply(_request()) is None
    assert time.monotonic() - started >= 0.095


def test_seeded_plan_repeats_the_same_fault_sequence(injector: FaultInjector) -> None:
    plan = FaultPlan(error_rate=0.5, rate_limit_rate=0.2, seed=42)
    injector.set_plan(plan)
    first = _statuses(injector, 30)
    injector.set_plan(plan)
    assert _statuses(injector, 30) == first
    assert {429, 503, None} <= set(first)


def test_clear_drops_queue_and_plan(injector: FaultInjector) -> None:
    injector.set_plan(FaultPlan(error_rate=1.0))
    injector.fail_next(5)
    injector.clear()
    assert injector.plan == FaultPlan()
    assert _statuses(injector, 3) == [None, None, None]


def test_configure_with_fail_next_queues_failures_and_sets_plan(injector: FaultInjector) -> None:
    injector.configure({"latency_ms": 1, "fail_next": {"n": 2, "status": 500, "retry_after": 2}})
    assert injector.plan == FaultPlan(latency_ms=1)
    assert _statuses(injector, 3) == [500, 500, None]


def test_configure_unknown_key_raises_value_error(injector: FaultInjector) -> None:
    with pytest.raises(ValueError):
        injector.configure({"eror_rate": 1})


def test_fail_next_under_concurrency_fails_exactly_n_requests(injector: FaultInjector) -> None:
    injector.fail_next(50)
    results: list[int | None] = []
    lock = threading.Lock()

    def worker() -> None:
        statuses = _statuses(injector, 20)
        with lock:
            results.extend(statuses)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(503) == 50
    assert results.count(None) == 110


def test_late_answer_marks_writes_only() -> None:
    injector = FaultInjector(error_body=_error_body, plan=FaultPlan(late_answer_rate=1.0, late_answer_seconds=3))
    write, read = _request(), Request.from_values(path="/api/thing", method="GET")
    assert injector.apply(write) is None and injector.apply(read) is None
    assert write.environ.get(ANSWER_LATE_KEY) == 3
    assert ANSWER_LATE_KEY not in read.environ


def test_late_answers_leave_the_other_faults_seeded_sequence_as_it_was() -> None:
    def sequence(**late: float) -> list[int | None]:
        return _statuses(FaultInjector(error_body=_error_body,
                                       plan=FaultPlan(error_rate=0.5, rate_limit_rate=0.2, seed=42, **late)), 30)

    assert sequence(late_answer_rate=0.5) == sequence()


def test_a_write_answered_late_is_carried_out_although_the_client_gave_up() -> None:
    """The vendor carries out the write at once and answers after the client's timeout: the box exists."""
    sandbox = StreakSandbox(api_key="k")
    sandbox.faults.set_plan(FaultPlan(late_answer_rate=1.0, late_answer_seconds=0.6))
    with sandbox, httpx.Client(base_url=sandbox.base_url, auth=("k", ""), timeout=0.2) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.post(f"/api/v2/pipelines/{sandbox.pipeline.key}/boxes", json={"name": "Order 7"})
        assert time.monotonic() - started < 0.5
        assert [box["name"] for box in sandbox.snapshot()["boxes"]] == ["Order 7"]
        sandbox.faults.clear()
        assert client.get(f"/api/v1/pipelines/{sandbox.pipeline.key}/boxes").status_code == 200


def test_spared_paths_are_never_slow_but_still_meet_errors() -> None:
    plan = FaultPlan(late_answer_rate=1.0, timeout_rate=1.0, timeout_seconds=5, slow_spared_paths=("/oauth2/",))
    injector = FaultInjector(error_body=_error_body, plan=plan)
    token = Request.from_values(path="/oauth2/v1/tokens/bearer", method="POST")
    started = time.monotonic()
    assert injector.apply(token) is None and ANSWER_LATE_KEY not in token.environ
    assert time.monotonic() - started < 1
    injector.set_plan(FaultPlan(error_rate=1.0, slow_spared_paths=("/oauth2/",)))
    assert injector.apply(token) is not None
    assert FaultPlan.from_dict({"slow_spared_paths": ["/a"]}).slow_spared_paths == ("/a",)
