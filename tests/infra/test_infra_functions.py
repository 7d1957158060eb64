"""Defaults every function gets from the one factory."""

from __future__ import annotations

import re

import pytest

# One xdist worker runs all infra tests, so the session fixtures synthesize each stage once.
pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


@pytest.fixture(scope="module")
def functions(dev):
    found = dev.of_type("AWS::Lambda::Function")
    assert {f.metadata.get("switchyard:role") for f in found} == {"ingest", "worker", "steps", "poller"}
    return found


def test_function_runtime_is_newest_python_cdk_offers():
    from aws_cdk import aws_lambda

    from infra.functions import RUNTIME

    def version(runtime) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", runtime.name))

    pythons = [r for r in aws_lambda.Runtime.ALL if r.name.startswith("python")]
    assert version(RUNTIME) == max(version(r) for r in pythons)


def test_function_all_arm64_on_python_runtime_with_shared_layer(functions, dev):
    from infra.functions import RUNTIME

    (layer,) = dev.tagged(role="shared-layer")
    assert layer.properties["CompatibleRuntimes"] == [RUNTIME.name]
    assert layer.properties["CompatibleArchitectures"] == ["arm64"]
    for function in functions:
        assert function.properties["Runtime"] == RUNTIME.name
        assert function.properties["Architectures"] == ["arm64"]
        assert dev.render(function.properties["Layers"]) == [layer.ref]


def test_function_all_json_logs_to_own_log_group_with_stage_retention(functions, dev, dev_stage):
    log_groups = set()
    for function in functions:
        logging = function.properties["LoggingConfig"]
        assert logging["LogFormat"] == "JSON"
        assert logging["ApplicationLogLevel"] == function.properties["Environment"]["Variables"]["POWERTOOLS_LOG_LEVEL"]
        log_group = dev.by_ref(dev.render(logging["LogGroup"]))
        assert log_group.properties["RetentionInDays"] == dev_stage.log_retention_days
        log_groups.add(log_group.logical_id)
    assert len(log_groups) == len(functions)


def test_function_all_actively_traced(functions):
    for function in functions:
        assert function.properties["TracingConfig"] == {"Mode": "Active"}


def test_function_roles_no_managed_policies_and_wildcard_only_for_xray(functions, dev):
    for function in functions:
        role = dev.by_ref(dev.render(function.properties["Role"]))
        assert "ManagedPolicyArns" not in role.properties
        for statement in dev.statements_for_role(role.ref):
            if statement["Resource"] == "*":
                assert set(statement["Action"]) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def test_function_factory_reserved_environment_override_raises(dev_stage):
    from aws_cdk import Duration, Stack
    from aws_cdk import aws_lambda as lambda_

    from infra.functions import FunctionFactory
    from infra.paths import INGEST_CODE

    stack = Stack()
    layer = lambda_.LayerVersion.from_layer_version_arn(
        stack, "Layer", "arn:aws:lambda:eu-west-1:123456789012:layer:x:1"
    )
    factory = FunctionFactory(stage=dev_stage, layer=layer)
    with pytest.raises(ValueError, match="POWERTOOLS_SERVICE_NAME"):
        factory.create(
            stack,
            "Fn",
            code=INGEST_CODE,
            service="ingest",
            description="x",
            environment={"POWERTOOLS_SERVICE_NAME": "other"},
            timeout=Duration.seconds(3),
            memory_mb=128,
        )
