"""Mapping rules' edges: literal braces in templates, naive date-times, e-mail domains, the checks of a rule's
shape and the names in their errors, and what a rule states itself (``convert_stated_outputs``).

Written for what mutation testing of mapping/rules.py found unpinned (docs/mutation-testing.md).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from switchyard.errors import MappingError
from switchyard.mapping.rules import compile_rule, convert_stated_outputs

WHERE = "box.fields.1002"


def value_of(rule: dict, data: dict) -> object:
    return compile_rule(rule, {}, WHERE)(data)


def test_template_literal_braces_are_kept():
    assert value_of({"template": "Order {{ref}} {Id}"}, {"Id": 42}) == "Order {ref} 42"


def test_add_days_of_a_naive_date_time_is_read_as_utc():
    assert value_of({"path": "At", "transforms": [{"add_days": 1}]}, {"At": "2026-12-03T10:00:00"}) == datetime(
        2026, 12, 4, 10, 0, tzinfo=UTC)


def test_email_domain_of_an_address_with_a_quoted_at_is_after_the_last_at():
    assert value_of({"path": "Email", "transforms": ["email_domain"]}, {"Email": '"jo@home"@example.com'}) == (
        "example.com")


def test_compile_rule_not_a_mapping_names_the_kinds():
    with pytest.raises(MappingError) as raised:
        compile_rule("Order.Id", {}, WHERE)
    assert str(raised.value) == f"{WHERE}: a rule is a mapping with one of path, template, const, each, first_of"


@pytest.mark.parametrize(("rule", "key"), [({"each": "", "item": "{Name}"}, "each"),
                                           ({"each": "OrderItems", "item": ""}, "item")])
def test_compile_rule_each_and_item_must_be_non_empty_strings(rule: dict, key: str):
    with pytest.raises(MappingError, match=f"^{WHERE}: '{key}' must be a non-empty string"):
        compile_rule(rule, {}, WHERE)


@pytest.mark.parametrize("rule", [{"template": "Order {}"}, {"each": "OrderItems", "item": "{} x"}])
def test_compile_rule_empty_placeholder_error_names_the_rule(rule: dict):
    with pytest.raises(MappingError, match=f"^{WHERE}: empty placeholder in template"):
        compile_rule(rule, {}, WHERE)


def test_convert_stated_outputs_last_transform_not_a_lookup_names_no_table():
    converted, tables = convert_stated_outputs({"path": "Stage", "transforms": [{"truncate": 5}], "default": "won"},
                                               str.upper)
    assert (converted["default"], tables) == ("WON", ())


def test_convert_stated_outputs_converts_what_each_first_of_alternative_states():
    rule = {"first_of": [{"const": "won"}, {"path": "Stage", "transforms": [{"lookup": "stages"}]},
                         {"path": "Old", "default": "lost", "transforms": [{"lookup": "pipelines"}]},
                         {"path": "Older", "transforms": [{"lookup": "stages"}]}]}

    converted, tables = convert_stated_outputs(rule, str.upper)

    assert converted == {"first_of": [{"const": "WON"}, {"path": "Stage", "transforms": [{"lookup": "stages"}]},
                                      {"path": "Old", "default": "LOST", "transforms": [{"lookup": "pipelines"}]},
                                      {"path": "Older", "transforms": [{"lookup": "stages"}]}]}
    assert tables == ("stages", "pipelines")  # each table once, in the order the alternatives name them
    assert rule["first_of"][0] == {"const": "won"}  # the document itself is left as it was
