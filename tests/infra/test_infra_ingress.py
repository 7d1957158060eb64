"""Webhook ingress: HTTP API route, stage, ingest function environment and grants, outputs."""

from __future__ import annotations

import json

import pytest
from switchyard.settings import IngestSettings

# One xdist worker runs all infra tests, so the session fixtures synthesize each stage once.
pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

POWERTOOLS = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}


@pytest.fixture(scope="module")
def ingest(dev):
    return dev.one(role="ingest")


@pytest.fixture(scope="module")
def api(dev):
    (found,) = dev.of_type("AWS::ApiGatewayV2::Api")
    return found


def test_ingest_environment_keys_equal_settings_env_names_plus_powertools(ingest):
    assert set(ingest.properties["Environment"]["Variables"]) == IngestSettings.env_names() | POWERTOOLS


def test_ingest_environment_parses_as_ingest_settings(ingest, dev):
    settings = IngestSettings.from_env(dev.render(ingest.properties["Environment"]["Variables"]))
    assert settings.max_body_bytes == 262_144
    assert settings.stage == "dev"


def test_ingest_sources_env_names_each_source_secret(ingest, dev, catalog):
    sources = json.loads(dev.render(ingest.properties["Environment"]["Variables"]["SWITCHYARD_SOURCES"]))
    assert sources == {
        name: {"secret_arn": dev.one(secret=f"source:{name}").ref, "signature": source.signature,
               "format": source.format, "ack_status": source.ack_status}
        for name, source in catalog.webhook_sources.items()
    }


def test_ingest_routes_env_maps_every_source_event_to_subscribed_flow_queues(ingest, dev, catalog):
    routes = json.loads(dev.render(ingest.properties["Environment"]["Variables"]["SWITCHYARD_ROUTES"]))
    assert routes == {
        source_name: {
            event: {
                flow.name: dev.one(role="queue", flow=flow.name).ref for flow in catalog.flows_for(source_name, event)
            }
            for event in source.events
        }
        for source_name, source in catalog.webhook_sources.items()
    }


def test_ingest_routes_for_undeployed_flows_lists_events_without_queues(catalog):
    from infra.constructs.ingress import routes_for

    routes = routes_for(catalog, flow_queues={})
    assert routes == {name: {key: {} for key in source.events} for name, source in catalog.webhook_sources.items()}


def test_ingest_role_may_send_to_flow_queues_and_read_source_secrets(ingest, dev, catalog):
    granted = dev.actions_on(dev.by_ref(dev.render(ingest.properties["Role"])).ref)
    for queue in dev.tagged(role="queue"):
        assert "sqs:SendMessage" in granted[queue.att("Arn")]
    for name in catalog.webhook_sources:
        assert "secretsmanager:GetSecretValue" in granted[dev.one(secret=f"source:{name}").ref]
    for dlq in dev.tagged(role="dlq"):
        assert dlq.att("Arn") not in granted
    for connection in catalog.connections:
        assert dev.one(secret=f"connection:{connection}").ref not in granted


def test_ingest_function_sized_from_stage_and_coded_from_functions_ingest(ingest, dev_stage):
    assert ingest.properties["MemorySize"] == dev_stage.ingest_memory_mb
    assert ingest.properties["Timeout"] == dev_stage.ingest_timeout_seconds < 30
    assert ingest.metadata["switchyard:code"] == "functions/ingest"


def test_api_route_post_webhooks_source_invokes_ingest_with_payload_v2(dev, api, ingest):
    (route,) = dev.of_type("AWS::ApiGatewayV2::Route")
    assert route.properties["RouteKey"] == "POST /webhooks/{source}"
    integration = dev.by_ref(dev.render(route.properties["Target"]).removeprefix("integrations/"))
    assert dev.render(integration.properties["IntegrationUri"]) == ingest.att("Arn")
    assert integration.properties["IntegrationType"] == "AWS_PROXY"
    assert integration.properties["PayloadFormatVersion"] == "2.0"
    # the API's permission (the other functions' are EventBridge rules': state machines' ended executions)
    (permission,) = [p for p in dev.of_type("AWS::Lambda::Permission")
                     if p.properties["Principal"] == "apigateway.amazonaws.com"]
    assert dev.render(permission.properties["FunctionName"]) == ingest.att("Arn")
    assert api.ref in dev.render(permission.properties["SourceArn"])


def test_api_stage_access_logs_to_retained_log_group_and_throttles(dev, api, dev_stage):
    (stage,) = dev.of_type("AWS::ApiGatewayV2::Stage")
    assert dev.render(stage.properties["ApiId"]) == api.ref
    assert stage.properties["StageName"] == "$default"
    assert stage.properties["AutoDeploy"] is True
    logs = stage.properties["AccessLogSettings"]
    log_group = dev.by_ref(dev.render(logs["DestinationArn"]))
    assert log_group.type == "AWS::Logs::LogGroup"
    assert log_group.properties["RetentionInDays"] == dev_stage.log_retention_days
    assert "$context.requestId" in json.loads(logs["Format"]).values()
    assert stage.properties["DefaultRouteSettings"] == {
        "ThrottlingBurstLimit": dev_stage.api_throttle_burst_limit,
        "ThrottlingRateLimit": dev_stage.api_throttle_rate_limit,
    }


def test_outputs_webhook_url_per_source_under_api_url(dev, api, catalog):
    outputs = dev.template["Outputs"]
    base = dev.render(outputs["ApiUrl"]["Value"])
    assert base.startswith(f"https://{api.ref}.execute-api.") and base.endswith("/")
    webhook_urls = {dev.render(o["Value"]) for key, o in outputs.items() if key.startswith("WebhookUrl")}
    assert webhook_urls == {f"{base}webhooks/{source}" for source in catalog.webhook_sources}


def test_outputs_alarm_topic_queue_dlq_and_secret_arns(dev, catalog):
    values = {dev.render(o["Value"]) for o in dev.template["Outputs"].values()}
    (topic,) = dev.of_type("AWS::SNS::Topic")
    expected = {topic.ref}
    expected |= {r.ref for r in dev.tagged(role="queue") + dev.tagged(role="dlq")}
    expected |= {dev.one(secret=f"source:{name}").ref for name in catalog.webhook_sources}
    expected |= {dev.one(secret=f"connection:{name}").ref for name in catalog.connections}
    assert expected <= values


def test_api_access_log_records_no_query_string_headers_or_body(dev, api):
    # a Streak token may travel as ?token=...; signatures travel in headers
    (stage,) = dev.of_type("AWS::ApiGatewayV2::Stage")
    fields = json.loads(stage.properties["AccessLogSettings"]["Format"]).values()
    assert not [f for f in fields if any(word in f for word in ("requestUri", "querystring", "header", "body"))]
    assert "$context.path" in fields  # the path alone, without its query string
