"""Conditions of mapping documents: ``{any: [...]}``, ``{all: [...]}``, ``{not: ...}`` or a test

    {path: Order.OrderTotal, gte: 100}      numbers compare as Decimal
    {path: Customer.Company, present: true} non-empty value present (or absent, with false)
    {path: Order.OrderStatusId, in: [10, 20]}
    {path: fields.1001, matches: "^CL-"}    a regular expression searched in the value as text
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from switchyard.errors import MappingError
from switchyard.mapping.rules import compile_path

Predicate = Callable[[Any], bool]


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _compare(op: Callable[[Decimal, Decimal], bool], expected: Any, where: str) -> Callable[[Any], bool]:
    bound = _decimal(expected)
    if bound is None:
        raise MappingError(f"{where}: comparison needs a number, got {expected!r}")

    def test(value: Any) -> bool:
        number = _decimal(value) if value is not None else None
        return number is not None and op(number, bound)

    return test


_OPERATORS: dict[str, Callable[[Any, str], Callable[[Any], bool]]] = {
    "gte": lambda e, w: _compare(lambda a, b: a >= b, e, w),
    "gt": lambda e, w: _compare(lambda a, b: a > b, e, w),
    "lte": lambda e, w: _compare(lambda a, b: a <= b, e, w),
    "lt": lambda e, w: _compare(lambda a, b: a < b, e, w),
    "eq": lambda e, _w: lambda v: v == e or str(v) == str(e),
    "ne": lambda e, _w: lambda v: not (v == e or str(v) == str(e)),
    "in": lambda e, _w: (lambda allowed: lambda v: str(v) in allowed)({str(x) for x in e}),
    "present": lambda e, _w: lambda v: (v is not None and str(v).strip() != "") == bool(e),
    "matches": lambda e, w: _matcher(e, w),
}


def _matcher(expression: Any, where: str) -> Callable[[Any], bool]:
    try:
        pattern = re.compile(str(expression))
    except re.error as exc:
        raise MappingError(f"{where}: 'matches' needs a regular expression: {exc}") from None
    return lambda v: v is not None and pattern.search(str(v)) is not None


def compile_condition(spec: Any, where: str) -> Predicate:
    """A predicate over the event's data; MappingError names ``where`` for a malformed condition."""
    return _compile_reference(spec, where)


def _compile_reference(spec: Any, where: str) -> Predicate:
    if not isinstance(spec, Mapping):
        raise MappingError(f"{where}: a condition is a mapping")
    if "any" in spec or "all" in spec:
        combinator = "any" if "any" in spec else "all"
        if len(spec) != 1 or not isinstance(spec[combinator], list) or not spec[combinator]:
            raise MappingError(f"{where}: '{combinator}' takes a non-empty list and nothing else")
        parts = tuple(
            _compile_reference(s, f"{where}.{combinator}[{i}]") for i, s in enumerate(spec[combinator])
        )
        if combinator == "any":
            def any_of(data: Any) -> bool:
                for part in parts:  # noqa: SIM110 (a loop beats any() over a generator here)
                    if part(data):
                        return True
                return False

            return any_of

        def all_of(data: Any) -> bool:
            for part in parts:  # noqa: SIM110
                if not part(data):
                    return False
            return True

        return all_of
    if "not" in spec:
        inner = _compile_reference(spec["not"], f"{where}.not")
        return lambda data: not inner(data)
    if "path" not in spec:
        raise MappingError(f"{where}: a test needs a path")
    operators = set(spec) - {"path"}
    if len(operators) != 1 or not operators <= _OPERATORS.keys():
        raise MappingError(f"{where}: give exactly one operator of {sorted(_OPERATORS)}")
    (name,) = operators
    if not isinstance(spec["path"], str) or not spec["path"]:
        raise MappingError(f"{where}: 'path' must be a non-empty string, got {spec['path']!r}")
    if name == "in" and not isinstance(spec["in"], list):
        raise MappingError(f"{where}: 'in' takes a list, got {spec['in']!r}")
    get = compile_path(spec["path"])
    test = _OPERATORS[name](spec[name], where)
    return lambda data: test(get(data))
