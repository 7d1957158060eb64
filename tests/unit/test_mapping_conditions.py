"""Conditions of mapping documents: tests, combinators, and load-time validation."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from switchyard.errors import MappingError
from switchyard.mapping.conditions import compile_condition

ORDER = {"Order": {"OrderTotal": Decimal("100.00"), "OrderStatusId": 20, "Note": "  "},
         "Customer": {"Company": "Acme", "Email": "a@b.example"}}


def holds(spec: dict[str, Any], data: Any = None) -> bool:
    return compile_condition(spec, "when")(ORDER if data is None else data)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"path": "Order.OrderTotal", "gte": 100}, True),
        ({"path": "Order.OrderTotal", "gte": "100.01"}, False),
        ({"path": "Order.OrderTotal", "gt": 100}, False),
        ({"path": "Order.OrderTotal", "gt": 99.99}, True),
        ({"path": "Order.OrderTotal", "lte": 100}, True),
        ({"path": "Order.OrderTotal", "lt": 100}, False),
        ({"path": "Order.OrderTotal", "lt": "1e3"}, True),
        ({"path": "Order.OrderStatusId", "eq": 20}, True),
        ({"path": "Order.OrderStatusId", "eq": "20"}, True),  # "20" from a query string still matches
        ({"path": "Order.OrderStatusId", "ne": 20}, False),
        ({"path": "Order.OrderStatusId", "ne": 30}, True),
        ({"path": "Order.OrderStatusId", "in": [10, 20]}, True),
        ({"path": "Order.OrderStatusId", "in": ["20"]}, True),
        ({"path": "Order.OrderStatusId", "in": [30, 40]}, False),
        ({"path": "Customer.Company", "present": True}, True),
        ({"path": "Customer.Company", "present": False}, False),
        ({"path": "Order.Note", "present": True}, False),  # blank is not present
        ({"path": "Order.Note", "present": False}, True),
        ({"path": "Customer.Nope", "present": False}, True),
        ({"path": "Customer.Company", "matches": "^Ac"}, True),
        ({"path": "Customer.Company", "matches": "^Zz"}, False),  # present, but not matching
        ({"path": "Customer.Nope", "matches": ".*"}, False),  # absent matches nothing, not even ".*"
        ({"path": "Order.OrderStatusId", "matches": "^2"}, True),  # a number is searched as text
    ],
)
def test_condition_operator_evaluates(spec: dict[str, Any], expected: bool) -> None:
    assert holds(spec) is expected


def test_condition_compares_decimals_exactly() -> None:
    # 0.1 + 0.2 style float error must not flip a threshold
    assert holds({"path": "v", "gte": "0.3"}, {"v": Decimal("0.30")}) is True
    assert holds({"path": "v", "gte": 0.3}, {"v": "0.3"}) is True


@pytest.mark.parametrize("operator", ["gte", "gt", "lte", "lt"])
@pytest.mark.parametrize("missing", [{}, {"v": None}, {"v": "n/a"}], ids=["absent", "null", "not-a-number"])
def test_condition_comparison_without_number_is_false(operator: str, missing: dict[str, Any]) -> None:
    assert holds({"path": "v", operator: 0}, missing) is False


def test_condition_any_true_when_one_part_true() -> None:
    spec = {"any": [{"path": "Order.OrderTotal", "gte": 1000}, {"path": "Customer.Company", "present": True}]}

    assert holds(spec) is True
    assert holds(spec, {"Order": {"OrderTotal": 5}, "Customer": {}}) is False


def test_condition_all_needs_every_part() -> None:
    spec = {"all": [{"path": "Order.OrderTotal", "gte": 100}, {"path": "Order.OrderStatusId", "eq": 10}]}

    assert holds(spec) is False
    assert holds(spec, {"Order": {"OrderTotal": 100, "OrderStatusId": 10}}) is True


def test_condition_not_negates() -> None:
    assert holds({"not": {"path": "Customer.Company", "present": True}}) is False


def test_condition_nested_combinators() -> None:
    spec = {"all": [{"not": {"path": "Order.OrderStatusId", "in": [40]}},
                    {"any": [{"path": "Order.OrderTotal", "gt": 500}, {"path": "Customer.Company", "present": True}]}]}

    assert holds(spec) is True
    assert holds(spec, {**ORDER, "Order": {**ORDER["Order"], "OrderStatusId": 40}}) is False


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"path": "Order.OrderTotal", "greater": 100}, "when: give exactly one operator of"),
        ({"path": "Order.OrderTotal", "gte": 1, "lte": 2}, "when: give exactly one operator of"),
        ({"path": "Order.OrderTotal"}, "when: give exactly one operator of"),
        ({"gte": 100}, "when: a test needs a path"),
        ({"path": "Order.OrderTotal", "gte": "lots"}, "when: comparison needs a number, got 'lots'"),
        ({"path": "Order.OrderStatusId", "in": 20}, "when: 'in' takes a list"),
        ({"path": "fields.1001", "matches": "^CL-("}, "when: 'matches' needs a regular expression"),
        ({"path": 5, "eq": 1}, "when: 'path' must be a non-empty string"),
        ({"any": []}, "when: 'any' takes a non-empty list and nothing else"),
        ({"all": {"path": "a", "eq": 1}}, "when: 'all' takes a non-empty list and nothing else"),
        ({"any": [{"path": "a", "eq": 1}], "path": "b"}, "when: 'any' takes a non-empty list"),
        ({"any": [{"path": "a", "eq": 1}, {"path": "b", "like": 2}]}, "when.any[1]: give exactly one operator"),
        ({"not": "Customer.Company"}, "when.not: a condition is a mapping"),
        (["path", "eq"], "when: a condition is a mapping"),
    ],
)
def test_compile_condition_invalid_raises_mapping_error_naming_where(spec: Any, message: str) -> None:
    with pytest.raises(MappingError) as raised:
        compile_condition(spec, "when")

    assert message in str(raised.value)
