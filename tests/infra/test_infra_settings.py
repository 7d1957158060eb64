"""Stage settings from ``cdk.json`` context: typed, validated, and what each stage declares."""

from __future__ import annotations

import pytest

# One xdist worker runs all infra tests, so the session fixtures synthesize each stage once.
pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


@pytest.fixture(scope="module")
def stages():
    from infra.application import project_context
    from infra.settings import STAGES_CONTEXT, stages_from_context

    return stages_from_context(project_context()[STAGES_CONTEXT])


def test_stage_settings_cdk_json_declares_dev_qa_prod(stages):
    assert set(stages) == {"dev", "qa", "prod"}
    assert [s.stack_name for s in stages.values()] == ["Switchyard-dev", "Switchyard-qa", "Switchyard-prod"]


def test_stage_settings_prod_retains_and_alerts_dev_destroys(stages):
    assert stages["prod"].removal_policy == "retain"
    assert stages["prod"].alarm_email
    assert stages["dev"].removal_policy == "destroy"


def test_stage_settings_cdk_json_bundles_dependencies_by_default():
    from infra.application import project_context
    from infra.settings import BUNDLE_DEPENDENCIES_CONTEXT

    assert project_context()[BUNDLE_DEPENDENCIES_CONTEXT] is True


def test_stage_settings_unknown_enabled_flow_raises_naming_it(catalog):
    from infra.settings import StageSettings

    stage = StageSettings(name="dev", enabled_flows=["no-such-flow"])
    with pytest.raises(ValueError, match="no-such-flow"):
        stage.flows(catalog)


def test_stage_settings_enabled_flow_list_selects_only_those(catalog):
    from infra.settings import StageSettings

    first = next(iter(catalog.flows))
    assert [f.name for f in StageSettings(name="dev", enabled_flows=[first]).flows(catalog)] == [first]
    assert StageSettings(name="dev", enabled_flows=[]).flows(catalog) == []
    assert StageSettings(name="dev").flows(catalog) == list(catalog.flows.values())


@pytest.mark.parametrize(
    "values",
    [
        {"log_retention_days": 10},
        {"removal_policy": "snapshot"},
        {"ingest_timeout_seconds": 30},
        {"alarm_email": "not-an-address"},
        {"alarm_emial": "typo@example.com"},
    ],
)
def test_stage_settings_invalid_context_raises_naming_stage(values):
    from infra.settings import SettingsError, stages_from_context

    with pytest.raises(SettingsError, match=r"switchyard:stages\.dev"):
        stages_from_context({"dev": values})


@pytest.mark.parametrize(("raw", "expected"), [(None, True), (False, False), ("false", False), ("true", True)])
def test_context_flag_cli_strings_parse_as_booleans(raw, expected):
    from infra.settings import flag_from_context

    assert flag_from_context(raw, default=True) is expected
