"""The registry of systems and pairs, and the one component that rebuilds what a secret change affects."""

from __future__ import annotations

import pytest
from switchyard import registry
from switchyard.catalog import load_catalog, parse_catalog
from switchyard.secret_bound import SecretBound


def test_every_flow_of_the_catalog_finds_its_target_or_steps_in_the_registry():
    catalog = load_catalog()
    for flow in catalog.flows.values():
        target = registry.system(flow.target)
        if flow.runs_as == "state-machine":
            assert flow.state_machine is not None
            for name in flow.state_machine.handlers:
                registry.step(name)  # raises for a step no system or pair registers
        elif flow.two_way is not None or registry.find_pair(flow.source, flow.target) is not None:
            assert registry.pair(flow.source, flow.target).target is not None, flow.name
        else:
            joined = registry.find_pair(flow.source, flow.target)
            assert (joined is not None and joined.target is not None) or target.target is not None, flow.name


def test_a_pair_registers_steps_named_after_one_of_its_systems():
    from switchyard.pairs.nopcommerce_bng import PAIR, STEPS

    step_set, step = registry.step("bng.sales_order")
    assert step == "sales_order" and step_set is PAIR.step_sets["bng"] and step_set.steps == STEPS
    assert {f"bng.{name}" for name in STEPS} <= registry.step_names()
    assert not registry.system("bng").step_sets  # the steps need nopCommerce too: the pair's, not BNG's
    with pytest.raises(registry.RegistryError, match="registers no step 'no_such_step'"):
        registry.step("bng.no_such_step")
    with pytest.raises(registry.RegistryError, match="no system 'ledger'"):
        registry.step("ledger.customer")


class _Adapters:
    time_scale = 1.0

    def __init__(self):
        self.waits_of = []

    def entity_state(self):
        from switchyard.entity_state import InMemoryEntityState

        return InMemoryEntityState()

    def waits(self, flow):
        self.waits_of.append(flow)
        return object()


def test_a_one_way_flow_between_paired_systems_gets_the_pairs_target_others_their_systems():
    from switchyard.compose import flow_target
    from switchyard.pairs.nopcommerce_bng.steps import BngEventsTarget
    from switchyard.registry import FlowContext

    catalog = load_catalog()
    secrets = {"bng": {"base_url": "http://bng.test", "api_key": "k"},
               "nopcommerce": {"base_url": "http://shop.test", "email": "a@b.test", "password": "p"}}
    adapters = _Adapters()
    bng_flow = FlowContext(flow=catalog.flows["bng-to-nopcommerce"], catalog=catalog, adapters=adapters)
    assert isinstance(flow_target(bng_flow)(secrets), BngEventsTarget)
    assert adapters.waits_of == ["nopcommerce-to-bng"]  # the waits of the flow it completes
    assert registry.find_pair("quickbooks", "nopcommerce") is None  # quickbooks-to-nopcommerce: its system's


def test_step_lookup_by_qualified_name_matches_the_steps_the_runner_knows():
    from switchyard.systems.quickbooks.order_to_cash import STEPS

    step_set, step = registry.step("quickbooks.customer")
    assert step == "customer"
    assert step_set.steps == STEPS
    with pytest.raises(registry.RegistryError):
        registry.step("quickbooks.no_such_step")


def test_unknown_system_in_the_catalog_is_refused_at_load():
    with pytest.raises(ValueError, match="no system 'ledger' is registered"):
        parse_catalog("""
sources: {}
connections: {books: {system: ledger}}
flows: {}
""")


def test_unknown_signature_or_format_is_refused_at_load():
    with pytest.raises(ValueError, match="unknown signature"):
        parse_catalog("sources: {shop: {signature: made-up, events: [a]}}\nconnections: {}\nflows: {}\n")
    with pytest.raises(ValueError, match="splits no format"):
        parse_catalog("sources: {streak: {signature: shared-token, format: intuit, events: [a]}}\n"
                      "connections: {}\nflows: {}\n")


def test_each_source_secret_scheme_is_known_to_the_registry():
    from switchyard.signatures import CORE_SCHEMES

    schemes = registry.signature_schemes(CORE_SCHEMES)
    assert {source.signature for source in load_catalog().webhook_sources.values()} <= set(schemes)


class Reader:
    def __init__(self, values):
        self.values = values
        self.reads = 0

    def __call__(self, secret_id):
        self.reads += 1
        return self.values[secret_id]


def test_secret_bound_builds_once_until_a_secret_changes():
    reader = Reader({"arn:a": {"base_url": "https://a", "api_key": "k1"}})
    built = []
    bound = SecretBound(reader, {"conn": "arn:a"}, lambda values: built.append(dict(values["conn"])) or len(built))

    assert [bound.get(), bound.get(), bound.get()] == [1, 1, 1]
    assert reader.reads == 3 and len(built) == 1  # read per request, built once

    reader.values["arn:a"] = {"base_url": "https://a", "api_key": "k2"}  # rotated
    assert bound.get() == 2
    assert built[-1]["api_key"] == "k2"


def test_secret_bound_ignores_keys_its_own_client_writes():
    reader = Reader({"arn:q": {"client_id": "c", "refresh_token": "r1", "access_token": "a1"}})
    bound = SecretBound(reader, {"q": "arn:q"}, lambda values: object(),
                        ignored_keys={"refresh_token", "access_token"})
    first = bound.get()
    reader.values["arn:q"] = {"client_id": "c", "refresh_token": "r2", "access_token": "a2"}
    assert bound.get() is first
    reader.values["arn:q"] = {"client_id": "c2", "refresh_token": "r2", "access_token": "a2"}
    assert bound.get() is not first


def test_reading_every_entry_imports_no_pydantic_httpx_or_yaml():
    """The ingest Lambda reads the entries at its cold start (signature schemes, formats): they stay cheap."""
    import subprocess
    import sys

    code = ("import sys; from switchyard import registry; from switchyard.signatures import CORE_SCHEMES;"
            "registry.systems(); registry.signature_schemes(CORE_SCHEMES);"
            "print(sorted({'pydantic', 'httpx', 'yaml', 'boto3'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_each_systems_secret_template_holds_only_keys_its_connection_model_reads():
    for name, entry in registry.systems().items():
        fields = set(entry.connection.settings().model_fields)
        assert set(entry.connection.secret_template) <= fields, name


def test_reconnect_finds_the_default_token_url_in_the_connection_model():
    from switchyard_cli.connections import default_token_url

    assert default_token_url("quickbooks") == "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
    assert default_token_url("streak") is None
