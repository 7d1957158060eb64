"""Value rules of mapping documents, and the Streak deal mapping document built from them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from switchyard.catalog import mapping_path
from switchyard.errors import MappingError, PermanentError
from switchyard.mapping.rules import compile_path, compile_rule, compile_rules
from switchyard.systems.streak.deal_mapping import DealMapping, load_deal_mapping, parse_deal_mapping

from tests.conftest import streak_document_in_keys

LOOKUPS = {"stage": {10: "5001", 20: "5002"}, "by_name": {"paid": "9003"}}
DATA: dict[str, Any] = {
    "Order": {"Id": 7, "Total": Decimal("1299.00"), "Cents": Decimal("24.99"), "Status": 10,
              "Created": "2026-11-20T09:15:00Z", "Naive": "2026-11-20T09:15:00",
              "Local": "2026-11-20T10:15:00+01:00", "Number": "A-1", "Blank": "   ", "Empty": ""},
    "Customer": {"Email": " Jane.Doe@Acme.example ", "First": "Jane", "Last": None, "Company": "Acme"},
    "Items": [{"Qty": 2, "Name": "Desk", "Sku": "D-1"}, {"Qty": 1, "Name": "Arm", "Sku": None}],
}
CREATED_MS = 1_795_166_100_000  # 2026-11-20T09:15:00Z


def value(rule: dict[str, Any], data: Any = None) -> Any:
    return compile_rule(rule, LOOKUPS, "rule")(DATA if data is None else data)


def reason_of(rule: dict[str, Any], data: Any = None) -> str:
    with pytest.raises(PermanentError) as raised:
        value(rule, data)
    return raised.value.reason


# --- paths, constants, templates, each ----------------------------------------------------------


def test_compile_path_nested_value_found() -> None:
    assert compile_path("Customer.First")(DATA) == "Jane"


@pytest.mark.parametrize("path", ["Customer.Nope", "Nope.Deeper", "Customer.First.Deeper", "Items.Qty"])
def test_compile_path_missing_or_not_a_mapping_gives_none(path: str) -> None:
    assert compile_path(path)(DATA) is None


def test_rule_path_reads_source_field() -> None:
    assert value({"path": "Order.Number"}) == "A-1"


def test_rule_const_returns_constant_whatever_the_data() -> None:
    assert value({"const": "sales@example.com"}, {}) == "sales@example.com"


def test_rule_template_fills_placeholders() -> None:
    assert value({"template": "Order {Order.Number} for {Customer.Company}"}) == "Order A-1 for Acme"


def test_rule_template_missing_fields_collapse_gaps() -> None:
    # Given a name template whose middle and last placeholders are empty
    rule = {"template": "Order {Order.Number} · {Customer.First} {Customer.Last} {Customer.Nope}"}

    assert value(rule) == "Order A-1 · Jane"


def test_rule_template_only_literals_and_whitespace_collapsed() -> None:
    assert value({"template": "  a   b  "}, {}) == "a b"


def test_rule_each_renders_one_item_per_entry_joined() -> None:
    rule = {"each": "Items", "item": "{Qty} x {Name} [{Sku}]", "join": "; "}

    assert value(rule) == "2 x Desk [D-1]; 1 x Arm []"


def test_rule_each_default_separator_is_semicolon() -> None:
    assert value({"each": "Items", "item": "{Name}"}) == "Desk; Arm"


@pytest.mark.parametrize("items", [[], None])
def test_rule_each_no_items_uses_default(items: Any) -> None:
    rule = {"each": "Items", "item": "{Name}", "default": "(none)"}

    assert value(rule, {"Items": items}) == "(none)"


# --- transforms -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"path": "Customer.Email", "transforms": ["trim"]}, "Jane.Doe@Acme.example"),
        ({"path": "Customer.Email", "transforms": ["trim", "lower"]}, "jane.doe@acme.example"),
        ({"path": "Customer.First", "transforms": ["upper"]}, "JANE"),
        ({"path": "Order.Status", "transforms": ["string"]}, "10"),
        ({"path": "Order.Total", "transforms": ["number"]}, 1299),
        ({"path": "Order.Cents", "transforms": ["number"]}, 24.99),
        ({"path": "Order.Number", "transforms": [{"prefix": "nop-"}]}, "nop-A-1"),
        ({"path": "Order.Cents", "transforms": ["decimal"]}, Decimal("24.99")),
        ({"path": "Order.Created", "transforms": ["epoch_ms"]}, CREATED_MS),
        ({"path": "Order.Naive", "transforms": ["epoch_ms"]}, CREATED_MS),  # naive = UTC
        ({"path": "Order.Local", "transforms": ["epoch_ms"]}, CREATED_MS),  # offsets respected
        ({"path": "Order.Created", "transforms": ["date"]}, "2026-11-20"),
        ({"path": "Order.Created", "transforms": [{"add_days": 3}, "epoch_ms"]}, CREATED_MS + 3 * 86_400_000),
        ({"path": "Order.Created", "transforms": [{"add_days": 0.5}, "date"]}, "2026-11-20"),
        ({"path": "Customer.Email", "transforms": ["trim", "lower", "email_domain"]}, "acme.example"),
        ({"path": "Customer.First", "transforms": [{"truncate": 2}]}, "Ja"),
        ({"path": "Order.Status", "transforms": [{"lookup": "stage"}]}, "5001"),
        ({"path": "Order.Number", "transforms": ["empty_to_null"]}, "A-1"),
    ],
    ids=lambda v: str(v.get("transforms")) if isinstance(v, dict) else None,
)
def test_rule_transform_chain_applied_in_order(rule: dict[str, Any], expected: Any) -> None:
    result = value(rule)

    assert result == expected
    assert type(result) is type(expected)


def test_rule_number_transform_of_string_decimal_keeps_value() -> None:
    assert value({"path": "v", "transforms": ["number"]}, {"v": "100.50"}) == 100.5


def test_rule_epoch_ms_of_datetime_object() -> None:
    moment = datetime(2026, 11, 20, 9, 15, tzinfo=UTC)

    assert value({"path": "v", "transforms": ["epoch_ms"]}, {"v": moment}) == CREATED_MS


@pytest.mark.parametrize("blank", ["Order.Blank", "Order.Empty"])
def test_rule_empty_to_null_blank_becomes_default(blank: str) -> None:
    rule = {"path": blank, "transforms": ["trim", "empty_to_null"], "default": "n/a"}

    assert value(rule) == "n/a"


def test_rule_email_domain_without_at_gives_none_and_stops_chain() -> None:
    rule = {"path": "v", "transforms": ["email_domain", "upper"]}

    assert value(rule, {"v": "no-address"}) is None


def test_rule_lookup_keys_compare_as_strings() -> None:
    # YAML keys 10/20 are ints; a status arriving as "20" still maps
    assert value({"path": "v", "transforms": [{"lookup": "stage"}]}, {"v": "20"}) == "5002"


def test_rule_lookup_miss_raises_permanent_unmapped_value() -> None:
    with pytest.raises(PermanentError, match="lookup 'stage'") as raised:
        value({"path": "v", "transforms": [{"lookup": "stage"}]}, {"v": 99})

    assert raised.value.reason == "unmapped_value"
    assert raised.value.error_class == "permanent"


def test_rule_lookup_of_missing_value_is_skipped_not_unmapped() -> None:
    assert value({"path": "Order.Nope", "transforms": [{"lookup": "stage"}]}) is None


@pytest.mark.parametrize(
    ("transform", "source"),
    [("number", "twelve"), ("decimal", "twelve"), ("epoch_ms", "yesterday"), ("date", 12345)],
)
def test_rule_transform_on_invalid_source_value_raises_permanent(transform: str, source: Any) -> None:
    assert reason_of({"path": "v", "transforms": [transform]}, {"v": source}) == "invalid_source_value"


# --- required and default --------------------------------------------------------------------------


@pytest.mark.parametrize("data", [{}, {"v": None}, {"v": ""}], ids=["absent", "null", "empty"])
def test_rule_required_missing_raises_missing_required_field(data: dict[str, Any]) -> None:
    with pytest.raises(PermanentError, match="rule: required value is missing") as raised:
        value({"path": "v", "required": True}, data)

    assert raised.value.reason == "missing_required_field"


def test_rule_required_with_default_uses_default() -> None:
    assert value({"path": "v", "required": True, "default": "x"}, {}) == "x"


def test_rule_required_blank_after_transforms_raises() -> None:
    rule = {"path": "Order.Blank", "transforms": ["trim", "empty_to_null"], "required": True}

    assert reason_of(rule) == "missing_required_field"


def test_rule_optional_missing_gives_none() -> None:
    assert value({"path": "Order.Nope"}) is None


def test_rule_zero_is_a_value_not_missing() -> None:
    assert value({"path": "v", "required": True}, {"v": 0}) == 0


# --- invalid rules fail at load with MappingError ----------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"path": "a", "transforms": ["reverse"]}, "unknown transform 'reverse'"),
        ({"path": "a", "transforms": [{"rot13": 1}]}, "unknown transform 'rot13'"),
        ({"path": "a", "transforms": [{"lookup": "nope"}]}, "unknown lookup table 'nope'"),
        ({"path": "a", "transforms": [{"lookup": "stage", "x": 1}]}, "a transform is a name or a one-key"),
        ({"path": "a", "transforms": [42]}, "a transform is a name or a one-key"),
        ({"path": "a", "transforms": "trim"}, "'transforms' must be a list"),
        ({"path": "a", "transforms": [{"add_days": "three"}]}, "'add_days' takes a number"),
        ({"path": "a", "transforms": [{"truncate": "long"}]}, "'truncate' takes a number"),
        ({"path": "a", "const": 1}, "exactly one of path, template, const, each"),
        ({"template": "x", "each": "a", "item": "b"}, "exactly one of path, template, const, each"),
        ({"required": True}, "exactly one of path, template, const, each"),
        ({"path": "a", "requird": True}, "unknown keys ['requird']"),
        ({"each": "Items"}, "'each' needs an 'item' template"),
        ({"template": "Order {}"}, "empty placeholder"),
        ({"path": 1001}, "'path' must be a non-empty string"),
        ({"path": ""}, "'path' must be a non-empty string"),
        ({"template": ["a"]}, "'template' must be a non-empty string"),
        ("Order.Id", "a rule is a mapping"),
    ],
)
def test_compile_rule_invalid_rule_raises_mapping_error(rule: Any, message: str) -> None:
    with pytest.raises(MappingError) as raised:
        compile_rule(rule, LOOKUPS, "box.fields.1002")

    assert message in str(raised.value)
    if "placeholder" not in message:  # template errors name the template itself instead
        assert str(raised.value).startswith("box.fields.1002: ")


# --- the deal mapping document --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return streak_document_in_keys("nopcommerce-to-streak.yaml")


def parse(doc: dict[str, Any]) -> DealMapping:
    return parse_deal_mapping(yaml.safe_dump(doc, allow_unicode=True), name="test.yaml")


def test_load_deal_mapping_shipped_document_loads() -> None:
    mapping = load_deal_mapping("nopcommerce-to-streak.yaml")

    assert mapping.events == {"order.placed": "upsert_deal", "order.status_changed": "move_stage"}
    assert mapping.order_key_field == "1001"


def test_parse_deal_mapping_round_trip_of_shipped_document(document: dict[str, Any]) -> None:
    assert parse(document).order_key_field == "1001"


def test_parse_deal_mapping_invalid_yaml_raises_mapping_error() -> None:
    with pytest.raises(MappingError, match=r"^broken\.yaml: not valid YAML"):
        parse_deal_mapping("flow: [unclosed\n  target: streak", name="broken.yaml")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("flow"), "flow: Field required"),
        (lambda d: d.__setitem__("target", "salesforce"), "target: Input should be 'streak'"),
        (lambda d: d.__setitem__("colour", "red"), "colour: Extra inputs are not permitted"),
        (lambda d: d["box"].__setitem__("stages", {}), "box.stages: Extra inputs are not permitted"),
        (lambda d: d["events"].__setitem__("order.placed", "create"), "events.order.placed"),
        (lambda d: d["contact"].pop("email"), "contact.email: Field required"),
    ],
)
def test_parse_deal_mapping_schema_problem_names_location(document, change, message: str) -> None:
    doc = yaml.safe_load(yaml.safe_dump(document))
    change(doc)

    with pytest.raises(MappingError, match=r"^test\.yaml: ") as raised:
        parse(doc)

    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["addresses"]["shipping"]["fields"].__setitem__("city", "1002"),
         "addresses.shipping.fields.city: field '1002' is set twice"),
        (lambda d: d["addresses"]["shipping"]["fields"].__setitem__("city", "1022"),
         "addresses.shipping.fields.city: field '1022' is set twice"),
        (lambda d: d["addresses"]["billing"].pop("city"), "addresses.billing.fields.city: the address has no city"),
        (lambda d: d["organization"].__setitem__("addresses", ["head_office"]),
         "organization.addresses: ['head_office'] are not among addresses"),
        (lambda d: d["addresses"]["billing"]["fields"].__setitem__("county", "1040"),
         "addresses.billing.fields.county"),
    ],
)
def test_parse_deal_mapping_address_problems_are_named(document, change, message: str) -> None:
    doc = yaml.safe_load(yaml.safe_dump(document))
    change(doc)

    with pytest.raises(MappingError) as raised:
        parse(doc)

    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["contact"]["fields"].__setitem__("Customer tier", {"const": "gold"}),
         "contact.fields: Streak has no writable property 'Customer tier'"),
        (lambda d: d["contact"]["fields"].__setitem__("emailAddresses", {"const": "x@y.example"}),
         "contact.fields: Streak has no writable property 'emailAddresses'"),  # contact.email sets it
        (lambda d: d["organization"]["fields"].__setitem__("title", {"const": "x"}),
         "organization.fields: Streak has no writable property 'title'"),  # a contact's, not an org's
        (lambda d: d["contact"].__setitem__("phone", {"path": "Customer.Phone"}),
         "contact.fields.phoneNumbers: the contact's phone is contact.phone already"),
    ],
)
def test_parse_deal_mapping_contact_and_organization_fields_streak_cannot_hold_are_refused(
    document, change, message: str
) -> None:
    doc = yaml.safe_load(yaml.safe_dump(document))
    change(doc)

    with pytest.raises(MappingError) as raised:
        parse(doc)

    assert message in str(raised.value)


def test_plan_addresses_leave_out_blank_parts_and_the_organization_gets_each_line_once(document) -> None:
    mapping = parse(yaml.safe_load(yaml.safe_dump(document)))
    address = {"Address1": " 1 Main St ", "Address2": None, "City": "  ", "ZipPostalCode": 12345, "CountryId": 2,
               "StateProvince": {"Name": "Ontario"}}
    data = {"Order": {"CustomOrderNumber": "7", "OrderStatusId": 10, "PaymentStatusId": 10, "OrderTotal": 500,
                      "CreatedOnUtc": "2026-11-20T09:15:00Z", "CurrencyRate": 1, "CustomerCurrencyCode": "CAD"},
            "OrderItems": [], "Customer": {"Email": "a@b.example", "Company": "B Ltd"},
            "BillingAddress": address, "ShippingAddress": address}

    plan = mapping.plan_deal(data)

    assert plan.addresses["billing"] == {"street": "1 Main St", "state": "Ontario", "postal_code": "12345",
                                         "country": "CA"}
    assert "1022" not in plan.fields and plan.fields["1024"] == "12345"
    assert plan.organization is not None and plan.organization.addresses == ("1 Main St, Ontario 12345, CA",)


def order(number: str = "7", *, total: float = 500, company: str | None = None, store: int = 1,
          country: int | None = 1) -> dict[str, Any]:
    return {"Order": {"CustomOrderNumber": number, "OrderStatusId": 10, "PaymentStatusId": 10, "OrderTotal": total,
                      "StoreId": store, "CreatedOnUtc": "2026-11-20T09:15:00Z", "CurrencyRate": 1,
                      "CustomerCurrencyCode": "USD"},
            "OrderItems": [], "Customer": {"Email": "a@b.example", "Company": company},
            "BillingAddress": {"CountryId": country}}


NORTH_AMERICA = ["ana.north@example.com", "ben.north@example.com", "carla.north@example.com"]


@pytest.mark.parametrize(
    ("data", "rep"),
    [
        (order(total=5000, company="Acme Corp", store=2), "kim.accounts@example.com"),  # total: the first rule
        (order(company=" ACME Labs"), "kim.accounts@example.com"),  # the customer's company
        (order(company="Acmeville Ltd"), None),  # not Acme: the word must end
        (order(store=2, country=1), "europe"),  # the store before the country
        (order(country=73), "europe"),
        (order(country=2), "north_america"),
        (order(country=None), "north_america"),  # no rule holds: the fallback
    ],
)
def test_plan_assignee_first_rule_that_holds_names_the_rep_or_team(data: dict[str, Any], rep: str | None) -> None:
    mapping = load_deal_mapping("nopcommerce-to-streak.yaml")

    assignee = mapping.plan_deal(data).assignee

    teams = {"europe": ["chloe.europe@example.com", "dan.europe@example.com"], "north_america": NORTH_AMERICA}
    if rep is None:
        assert assignee in NORTH_AMERICA  # Acmeville: falls through to its country's team
    elif rep in teams:
        assert assignee in teams[rep]
    else:
        assert assignee == rep


def test_plan_assignee_round_robin_is_the_same_for_an_order_and_spreads_orders_evenly() -> None:
    mapping = load_deal_mapping("nopcommerce-to-streak.yaml")

    picks = [mapping.plan_deal(order(str(number))).assignee for number in range(3000)]

    assert [mapping.plan_deal(order(str(number))).assignee for number in range(50)] == picks[:50]
    assert set(picks) == set(NORTH_AMERICA)
    assert all(900 <= picks.count(rep) <= 1100 for rep in NORTH_AMERICA)  # about a third each
    assert mapping.plan_deal(order()).task.assignee_email == mapping.plan_deal(order()).assignee  # type: ignore[union-attr]


def test_plan_assignee_filtered_order_is_assigned_to_nobody() -> None:
    plan = load_deal_mapping("nopcommerce-to-streak.yaml").plan_deal(order(total=20))

    assert plan.create is False and plan.assignee is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a["rules"].append({"team": "asia"}), "assignment.rules[5]: team 'asia' is not among"),
        (lambda a: a["rules"].append({"team": "europe", "rep": "kim.accounts@example.com"}),
         "assignment.rules[5]: name either a rep or a team"),
        (lambda a: a["rules"].append({"when": {"path": "Order.StoreId", "eq": 3}}), "name either a rep or a team"),
        (lambda a: a["rules"].append({"rep": "kim"}), "rep 'kim' is not an e-mail address"),
        (lambda a: a["teams"].__setitem__("europe", []), "assignment.teams.europe: name each member once"),
        (lambda a: a["fallback"].__setitem__("when", {"path": "Order.StoreId", "eq": 3}), "it takes no 'when'"),
        (lambda a: a["rules"][0]["when"].__setitem__("gte", "lots"), "assignment.rules[0].when"),
    ],
)
def test_parse_deal_mapping_assignment_problems_are_named(document, change, message: str) -> None:
    doc = yaml.safe_load(yaml.safe_dump(document))
    change(doc["assignment"])

    with pytest.raises(MappingError) as raised:
        parse(doc)

    assert message in str(raised.value)


@pytest.mark.parametrize("text", ["", "- a list\n", "just text\n"])
def test_parse_deal_mapping_not_a_mapping_raises_mapping_error(text: str) -> None:
    with pytest.raises(MappingError, match=r"^doc\.yaml: "):
        parse_deal_mapping(text, name="doc.yaml")


def test_parse_deal_mapping_bad_rule_names_document_and_rule(document: dict[str, Any]) -> None:
    doc = yaml.safe_load(yaml.safe_dump(document))
    doc["box"]["fields"]["1004"]["transforms"] = [{"lookup": "payment_status"}]

    with pytest.raises(MappingError) as raised:
        parse(doc)

    assert str(raised.value) == "test.yaml: box.fields.1004: unknown lookup table 'payment_status'"


def test_parse_deal_mapping_bad_condition_operator_raises_mapping_error(document: dict[str, Any]) -> None:
    doc = yaml.safe_load(yaml.safe_dump(document))
    doc["create_when"] = {"path": "Order.OrderTotal", "greater": 100}

    with pytest.raises(MappingError, match=r"test\.yaml: create_when: give exactly one operator"):
        parse(doc)


def test_parse_deal_mapping_order_key_field_not_in_box_fields_raises(document: dict[str, Any]) -> None:
    doc = yaml.safe_load(yaml.safe_dump(document))
    doc["order_key_field"] = "1099"

    with pytest.raises(MappingError, match=r"order_key_field must be one of box\.fields"):
        parse(doc)


def test_parse_deal_mapping_minimal_document_plans_without_optional_parts() -> None:
    # Given a document with no organization, task, condition or notes
    text = Path(mapping_path("nopcommerce-to-streak.yaml")).read_text()
    doc = yaml.safe_load(text)
    for optional in ("organization", "task", "create_when"):
        doc.pop(optional)
    doc["box"].pop("notes")
    doc["box"].pop("amount")
    mapping = parse(doc)

    plan = mapping.plan_deal({"Order": {"CustomOrderNumber": "9", "OrderStatusId": 10, "OrderTotal": 1},
                              "Customer": {"Email": "a@b.example"}})

    assert (plan.create, plan.organization, plan.task, plan.notes) == (True, None, None, None)
    assert plan.box_name == "Order 9 ·"


# --- paths of three or more segments: the general getter ----------------------------------------------


def test_compile_path_three_segments_value_found() -> None:
    data = {"Order": {"Customer": {"Address": {"City": "Lyon"}}}}

    assert compile_path("Order.Customer.Address")(data) == {"City": "Lyon"}
    assert compile_path("Order.Customer.Address.City")(data) == "Lyon"


@pytest.mark.parametrize("data", [{}, {"Order": None}, {"Order": {"Customer": "Jane"}}, {"Order": {"Customer": {}}},
                                  "not an object"],
                         ids=["first-missing", "first-null", "middle-not-object", "last-missing", "root-not-object"])
def test_compile_path_three_segments_missing_step_gives_none(data: Any) -> None:
    assert compile_path("Order.Customer.City")(data) is None


def test_rule_three_segment_path_reads_source_field() -> None:
    assert value({"path": "Order.Customer.City"}, {"Order": {"Customer": {"City": "Lyon"}}}) == "Lyon"


# --- rule groups (compile_rules) -------------------------------------------------------------------


def test_compile_rules_each_rule_joins_items_with_its_own_separator() -> None:
    evaluate = compile_rules([("x", {"each": "Order.Items", "item": "{Qty} x {Name}", "join": " | "})], {})

    items = [{"Qty": 2, "Name": "Desk"}, {"Qty": 1, "Name": "Arm"}]

    assert evaluate({"Order": {"Items": items}}) == ("2 x Desk | 1 x Arm",)


@pytest.mark.parametrize("data", [{"Order": {}}, {"Order": {"Note": ""}}, {"Order": {"Note": None}}],
                         ids=["missing", "blank", "null"])
def test_compile_rules_rule_without_a_value_takes_its_default(data: dict[str, Any]) -> None:
    evaluate = compile_rules([("x", {"path": "Order.Note", "default": "(no note)"})], {})

    assert evaluate(data) == ("(no note)",)


def test_compile_rules_rule_with_a_value_ignores_its_default() -> None:
    evaluate = compile_rules([("x", {"path": "Order.Note", "default": "(no note)"})], {})

    assert evaluate({"Order": {"Note": "gift"}}) == ("gift",)


def test_compile_rules_errors_are_the_rules_own() -> None:
    evaluate = compile_rules([("x", {"path": "a.b", "transforms": [{"lookup": "t"}], "required": True})],
                             {"t": {"1": "one"}})
    assert evaluate({"a": {"b": 1}}) == ("one",)
    with pytest.raises(PermanentError) as missing:
        evaluate({"a": {}})
    assert missing.value.reason == "missing_required_field"
    with pytest.raises(PermanentError) as unmapped:
        evaluate({"a": {"b": 2}})
    assert unmapped.value.reason == "unmapped_value"


# --- first_of: the first rule with a value ---------------------------------------------------------

FIRST_OF = {"first_of": [{"path": "Customer.Company"}, {"path": "Billing.Company"},
                         {"template": "{Customer.FirstName} {Customer.LastName}"}, {"path": "Customer.Email"}]}


@pytest.mark.parametrize(("data", "expected"), [
    ({"Customer": {"Company": "Acme", "Email": "a@x"}, "Billing": {"Company": "Bill Co"}}, "Acme"),
    ({"Customer": {"Company": "  ", "Email": "a@x"}, "Billing": {"Company": "Bill Co"}}, "Bill Co"),
    ({"Customer": {"Company": None, "FirstName": "Jane", "Email": "a@x"}}, "Jane"),
    ({"Customer": {"Email": "a@x"}}, "a@x"),
    ({"Customer": {}}, None),
], ids=["first", "blank-skipped", "template", "last", "none"])
def test_rule_first_of_takes_the_first_alternative_with_a_value(data: dict[str, Any], expected: Any) -> None:
    assert compile_rule(FIRST_OF, {}, "x")(data) == expected


def test_rule_first_of_zero_is_a_value_and_outer_transforms_apply() -> None:
    rule = {"first_of": [{"path": "a"}, {"const": 5}], "transforms": ["string", {"prefix": "#"}, {"suffix": "!"}]}
    assert compile_rule(rule, {}, "x")({"a": 0}) == "#0!"
    assert compile_rule(rule, {}, "x")({}) == "#5!"


def test_rule_first_of_alternatives_keep_their_own_transforms_and_lookups() -> None:
    rule = {"first_of": [{"path": "state.code", "transforms": ["trim", "upper", "empty_to_null"]},
                         {"path": "state.id", "transforms": [{"lookup": "states"}]}], "required": True}
    lookups = {"states": {"7": "NY", "*": None}}
    assert compile_rule(rule, lookups, "x")({"state": {"code": " ca "}}) == "CA"
    assert compile_rule(rule, lookups, "x")({"state": {"code": "", "id": 7}}) == "NY"
    with pytest.raises(PermanentError) as missing:
        compile_rule(rule, lookups, "x")({"state": {"id": 8}})
    assert missing.value.reason == "missing_required_field"


@pytest.mark.parametrize("rule", [{"first_of": []}, {"first_of": {"path": "a"}}, {"first_of": [{"pth": "a"}]}])
def test_rule_first_of_malformed_raises_mapping_error_naming_the_rule(rule: dict[str, Any]) -> None:
    with pytest.raises(MappingError, match=r"^x"):
        compile_rule(rule, {}, "x")


def test_rule_when_yields_the_value_only_while_the_condition_holds() -> None:
    rule = {"template": "{Customer.LastName}, {Customer.FirstName}",
            "when": {"path": "Customer.LastName", "present": True}, "default": "(none)"}
    assert compile_rule(rule, {}, "x")({"Customer": {"LastName": "Lee", "FirstName": "Sam"}}) == "Lee, Sam"
    assert compile_rule(rule, {}, "x")({"Customer": {"FirstName": "Sam"}}) == "(none)"


def test_rule_when_with_a_malformed_condition_raises_mapping_error_naming_it() -> None:
    with pytest.raises(MappingError, match=r"x\.when"):
        compile_rule({"path": "a", "when": {"path": "b", "bigger": 1}}, {}, "x")
