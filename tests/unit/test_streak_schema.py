"""PipelineSchemas: Streak's field definitions read once per cold start and TTL, judged before writing."""

from __future__ import annotations

import httpx
import pytest
from switchyard.errors import PermanentError
from switchyard.systems.streak.client import StreakClient, StreakConnection
from switchyard.systems.streak.schema import PipelineSchemas
from switchyard_local.sandboxes.streak import DEMO_PIPELINE, StreakSandbox

VALID = {"1001": "1042", "1002": 12.5, "1003": 1_795_166_100_000, "1004": "9003"}


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def client(sandbox: StreakSandbox) -> StreakClient:
    connection = StreakConnection(base_url="http://streak.test", api_key="sandbox-key", team_key="team_1",
                                  pipeline_key=DEMO_PIPELINE.key)
    return StreakClient(connection, transport=httpx.WSGITransport(app=sandbox.wsgi_app))


def pipeline_reads(sandbox: StreakSandbox) -> int:
    return sum(1 for _, path, _ in sandbox.requests if path == "/api/v1/pipelines/pl_orders")


def test_schema_read_once_per_ttl() -> None:
    sandbox, clock = StreakSandbox(), Clock()
    schemas = PipelineSchemas(ttl=300, clock=clock)
    streak = client(sandbox)

    schemas.check(streak, "pl_orders", "5001", VALID)
    schemas.check(streak, "pl_orders", "5002", VALID)
    assert pipeline_reads(sandbox) == 1
    clock.now = 301
    schemas.check(streak, "pl_orders", "5001", VALID)
    assert pipeline_reads(sandbox) == 2


@pytest.mark.parametrize(("values", "problem"), [
    ({"1004": "Paid"}, 'field 1004 "Payment status" (DROPDOWN)'),
    ({"1002": "12.50"}, 'field 1002 "Order total" (NUMBER)'),
    ({"1003": 1_795_166_100}, 'field 1003 "Order date" (DATE): expected epoch milliseconds'),
    ({"1001": 1042}, 'field 1001 "Order number" (TEXT_INPUT)'),
    ({"4242": "x"}, "field '4242' is not a field of the pipeline"),
])
def test_schema_names_every_value_streak_would_refuse(values: dict, problem: str) -> None:
    sandbox = StreakSandbox()
    with pytest.raises(PermanentError) as raised:
        PipelineSchemas().check(client(sandbox), "pl_orders", "5001", values)

    assert raised.value.reason == "plan_rejected_by_target_schema"
    assert problem in raised.value.message
    assert pipeline_reads(sandbox) == 2  # judged again against a fresh copy before refusing


def test_schema_unknown_stage_refused() -> None:
    with pytest.raises(PermanentError, match="stage '5999'"):
        PipelineSchemas().check(client(StreakSandbox()), "pl_orders", "5999", VALID)
