"""Every value a source may send must be one its mapping's lookups can judge before ingest accepts it.

A lookup miss at the worker fails the whole event permanently (``unmapped_value``) after the sender
was told ``202``. So, per lookup table a mapping document applies to a source field, one of:
- the table declares a default (the key ``"*"``): any value it does not list maps to that;
- the source model enumerates the field's values (a ``Literal``), and the table lists every one of
  them (after the transforms before the lookup, e.g. ``lower``): ingest answers any other value 422.
``uncovered_lookups`` lists the rules that meet neither; a test runs it on every flow's document.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from switchyard.mapping.rules import LOOKUP_DEFAULT, _compile_transform

Schema = Mapping[str, Any]


class LookupUse(NamedTuple):
    where: str  # e.g. box.fields.1004
    path: str | None  # the source field read (None: a template, each or const rule)
    before: tuple[Any, ...]  # the transforms applied before the lookup
    table: str


def lookup_uses(node: Any, where: str = "") -> Iterator[LookupUse]:
    """Every rule of a raw mapping document that applies a lookup table."""
    if isinstance(node, Mapping):
        transforms = node.get("transforms")
        if isinstance(transforms, list):
            for index, spec in enumerate(transforms):
                if isinstance(spec, Mapping) and "lookup" in spec:
                    path = node.get("path") if isinstance(node.get("path"), str) else None
                    yield LookupUse(where, path, tuple(transforms[:index]), str(spec["lookup"]))
        for key, value in node.items():
            if key != "lookups":
                yield from lookup_uses(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from lookup_uses(value, f"{where}[{index}]")


def field_values(schema: Schema, path: str) -> tuple[bool, frozenset[Any] | None]:
    """(declared, values) of ``data.<path>`` in an event's JSON Schema: values None when unbounded."""
    defs = schema.get("$defs", {})

    def resolve(node: Schema) -> Schema:
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        return node

    def branches(node: Schema) -> list[Schema]:
        node = resolve(node)
        if "anyOf" in node or "oneOf" in node:
            return [b for branch in node.get("anyOf", node.get("oneOf", [])) for b in branches(branch)]
        return [node]

    nodes = [schema.get("properties", {}).get("data", {})]
    for part in path.split("."):
        found = [b["properties"][part] for node in nodes for b in branches(node)
                 if part in b.get("properties", {})]
        if not found:
            return False, None
        nodes = found
    values: set[Any] = set()
    for node in nodes:
        for branch in branches(node):
            if branch.get("type") == "null":
                continue  # no value: the lookup is not applied
            if "const" in branch:
                values.add(branch["const"])
            elif "enum" in branch:
                values.update(branch["enum"])
            else:
                return True, None
    return True, frozenset(values)


def uncovered_lookups(document: Mapping[str, Any], schemas: Mapping[str, Schema]) -> list[str]:
    """Problems (empty when none): lookups that could fail for a value ingest accepted.

    ``schemas``: event type -> JSON Schema of the source's events the document handles.
    """
    lookups = document.get("lookups") or {}
    problems = []
    for use in lookup_uses(document):
        table = {str(key): value for key, value in (lookups.get(use.table) or {}).items()}
        if LOOKUP_DEFAULT in table:
            continue
        declared = [field_values(schema, use.path) for schema in schemas.values()] if use.path else []
        domains = [values for found, values in declared if found]
        if not domains or any(values is None for values in domains):
            problems.append(f"{use.where}: lookup {use.table!r} has no default ({LOOKUP_DEFAULT!r}) and "
                            f"{use.path or 'its value'} may be any value the source sends: declare a default, "
                            f"or enumerate the field's values in the source model")
            continue
        before = [_compile_transform(spec, lookups, use.where) for spec in use.before]
        missing = []
        for value in sorted(frozenset().union(*domains), key=str):  # type: ignore[arg-type]
            key = value
            for transform in before:
                key = transform(key)
            if str(key) not in table:
                missing.append(value)
        if missing:
            problems.append(f"{use.where}: lookup {use.table!r} lists no entry for {missing} (values the source "
                            f"model allows for {use.path}) and has no default ({LOOKUP_DEFAULT!r})")
    return problems
