"""A polled source: a schedule at the stage's rate -> the poller function -> the source's flow queues, with
least-privilege grants and alarms that name their runbooks (issue 10)."""

from __future__ import annotations

import json

import pytest
from switchyard.table_keys import poll_grants, pushed_grant

from tests.infra.test_infra_alarms import alarms_on, assert_pages_topic_and_names_runbook
from tests.infra.test_infra_table_access import granted_patterns

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


POLLED = ("nopcommerce", "clarity", "bng")  # a shop's orders through its plugin; Clarity's orders, BNG's lists swept


def poller(dev, source):
    (function,) = [f for f in dev.tagged(role="poller")
                   if dev.render(f.properties["Environment"]["Variables"])["SWITCHYARD_SOURCE"] == source]
    return function


def schedule_of(dev, function):
    (schedule,) = [s for s in dev.of_type("AWS::Scheduler::Schedule")
                   if dev.render(s.properties["Target"])["Arn"] == function.att("Arn")]
    return schedule


def test_every_polled_source_and_only_those_has_a_poller(dev, catalog):
    assert set(catalog.polled_sources()) == set(POLLED)
    assert len(dev.tagged(role="poller")) == len(POLLED)


@pytest.mark.parametrize("source", POLLED)
def test_one_poller_per_polled_source_runs_the_poller_code_with_its_settings(dev, catalog, source):
    function = poller(dev, source)
    env = dev.render(function.properties["Environment"]["Variables"])
    assert function.metadata["switchyard:code"] == "functions/poller"
    assert (env["SWITCHYARD_SOURCE"], env["SWITCHYARD_DELIVERY"], env["SWITCHYARD_POLL_SYSTEM"],
            env["SWITCHYARD_POLL_CONNECTION"]) == (source, "both", source, source)
    poll = json.loads(env["SWITCHYARD_POLL"])
    assert poll == catalog.sources[source].poll.model_dump(mode="json", exclude_none=True)
    assert function.properties["Timeout"] == catalog.sources[source].poll.timeout_seconds
    assert env["POWERTOOLS_SERVICE_NAME"] == f"poller-{source}"


@pytest.mark.parametrize("source", POLLED)
def test_the_schedule_invokes_only_the_poller_every_minute_with_a_role_of_its_own(dev, source):
    schedule = schedule_of(dev, poller(dev, source))
    target = dev.render(schedule.properties["Target"])
    assert schedule.properties["ScheduleExpression"] == "rate(1 minute)"
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    role = dev.by_ref(target["RoleArn"])
    assert dev.actions_on(role.ref) == {poller(dev, source).att("Arn"): {"lambda:InvokeFunction"}}
    principal = role.properties["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
    assert principal == {"Service": "scheduler.amazonaws.com"}
    assert len(dev.of_type("AWS::Scheduler::Schedule")) == len(POLLED)


@pytest.mark.parametrize("source", POLLED)
def test_the_poller_reaches_its_flow_queues_its_connection_secret_and_its_own_table_items_only(dev, catalog, source):
    function = poller(dev, source)
    role = dev.by_ref(dev.render(function.properties["Role"]))
    granted = dev.actions_on(role.ref)
    queues = {q.att("Arn") for q in dev.tagged(role="queue")
              if catalog.flows[q.metadata["switchyard:flow"]].source == source}
    assert queues
    assert {r for r, actions in granted.items() if "sqs:SendMessage" in actions} == queues
    secret = next(s for s in dev.of_type("AWS::SecretsManager::Secret")
                  if s.metadata.get("switchyard:secret") == f"connection:{source}")
    assert {r for r, actions in granted.items() if "secretsmanager:GetSecretValue" in actions} == {secret.ref}
    assert granted_patterns(dev, function) == {
        f"poll#{source}#*": {"dynamodb:GetItem", "dynamodb:PutItem"},
        f"pushed#{source}#*": {"dynamodb:GetItem"},
    } == {f"{g.prefix}*": {f"dynamodb:{a}" for a in g.actions} for g in poll_grants(source, source)}


def test_ingest_records_the_pushed_ids_of_swept_sources_and_may_only_put_them(dev):
    ingest = dev.one(role="ingest")
    env = dev.render(ingest.properties["Environment"]["Variables"])
    assert sorted(env["SWITCHYARD_SWEPT_SOURCES"].split(",")) == sorted(POLLED)
    assert env["SWITCHYARD_IDEMPOTENCY_TABLE"] == dev.one(role="idempotency-table").ref
    assert granted_patterns(dev, ingest) == {f"{pushed_grant(source).prefix}*": {"dynamodb:PutItem"}
                                             for source in POLLED}


@pytest.mark.parametrize("source", POLLED)
@pytest.mark.parametrize(("metric", "anchor", "threshold"), [
    ("PollFailures", "poll-failures", 3), ("PollLagSeconds", "poll-lag", 900),
    ("PollRecoveredBySweep", "poll-recovered-by-sweep", 1)])
def test_poller_alarms_page_and_name_their_runbook(dev, metric, anchor, threshold, source):
    (alarm,) = alarms_on(dev, "Switchyard", metric, "service", f"poller-{source}")
    assert_pages_topic_and_names_runbook(dev, alarm, anchor)
    assert alarm["Threshold"] == threshold


def test_poll_rate_comes_from_the_stage_context():
    from infra.settings import StageSettings

    assert StageSettings(name="dev").poll_rate_minutes == 1
    with pytest.raises(ValueError):
        StageSettings(name="dev", poll_rate_minutes=0)
