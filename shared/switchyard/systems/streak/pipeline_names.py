"""Stages, fields and dropdown items named in a deal mapping document as the pipeline names them.

A document may write ``"Payment status"`` where Streak wants field key ``"1004"``, ``New Order`` for
stage ``"5001"`` and ``Paid`` for dropdown item ``"9003"``: ``resolve_names`` turns every name into its
key from the pipeline's definition (``GET /api/v1/pipelines/{pipelineKey}``), so one document serves
pipelines whose keys differ (a test team's and the real one). Keys stay allowed (a key wins over a
name). Names are resolved where the document states them: field names (box fields, the stage change's
fields, the order key field, the amount's and the addresses' fields), the stage change's lifecycle,
and the values a stage or dropdown rule yields as stated (a ``const``, a ``default``, the lookup table
its last transform applies). A value read from the event must already be a key.

Every name that is not in the pipeline is reported at once, each with the names that are.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from switchyard.errors import MappingError
from switchyard.mapping.lookup_coverage import lookup_uses
from switchyard.mapping.rules import convert_stated_outputs
from switchyard.systems.streak.schema import FieldDefinition, PipelineSchema


class _Unresolved(Exception):
    pass


def _pick(ref: Any, named: tuple[tuple[str, str], ...], what: str, in_what: str) -> str:
    """The key ``ref`` is (a key wins), or the key of the one entry named ``ref``."""
    text = str(ref)
    if any(key == text for key, _name in named):
        return text
    matches = [key for key, name in named if name == text]
    if not matches:  # "payment status" for "Payment status": one spelling of the same name
        matches = [key for key, name in named if name.strip().casefold() == text.strip().casefold()]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(repr(name) for _key, name in named) or "none"
    if matches:
        raise _Unresolved(f"{what} {text!r} names {len(matches)} {what}s of {in_what} ({', '.join(matches)}): "
                          f"give its key")
    raise _Unresolved(f"no {what} {text!r} in {in_what} (its {what}s: {names})")


class _Resolver:
    def __init__(self, schema: PipelineSchema) -> None:
        self.schema = schema
        self.in_pipeline = f"pipeline {schema.name!r}" if schema.name else "the pipeline"
        self.problems: list[str] = []
        self._fields = tuple((key, definition.name) for key, definition in schema.fields.items())

    def _note(self, where: str, resolve: Callable[[], str], ref: Any) -> Any:
        try:
            key = resolve()
        except _Unresolved as exc:
            self.problems.append(f"{where}: {exc}")
            return ref
        return key

    def stage(self, where: str, ref: Any) -> Any:
        return self._note(where, lambda: _pick(ref, self.schema.stages, "stage", self.in_pipeline), ref)

    def field(self, where: str, ref: Any) -> Any:
        return self._note(where, lambda: _pick(ref, self._fields, "field", self.in_pipeline), ref)

    def item(self, where: str, definition: FieldDefinition, ref: Any) -> Any:
        in_field = f'dropdown field {definition.key} "{definition.name}"'
        return self._note(where, lambda: _pick(ref, definition.items, "item", in_field), ref)


def _items_of(resolver: _Resolver, definition: FieldDefinition) -> Callable[[str, Any], Any]:
    return lambda where, ref: resolver.item(where, definition, ref)


def resolve_names(document: Mapping[str, Any], schema: PipelineSchema) -> tuple[dict[str, Any], bool]:
    """(the document with keys for every name, whether it named anything); MappingError lists every name
    the pipeline lacks. ``document`` is a deal mapping document as loaded from YAML (already validated)."""
    resolver = _Resolver(schema)
    doc = copy.deepcopy(dict(document))
    lookups: dict[str, dict[Any, Any]] = doc.get("lookups") or {}
    # table -> (what its values are resolved as, the converter); every use of it must want the same
    resolved_tables: dict[str, tuple[str, Callable[[str, Any], Any]]] = {}
    resolved_at: set[str] = set()  # the rules whose lookup tables are resolved

    def outputs(where: str, rule: Any, kind: str, convert: Callable[[str, Any], Any]) -> Any:
        if not isinstance(rule, Mapping):
            return rule
        converted, tables = convert_stated_outputs(rule, lambda value: convert(where, value))
        resolved_at.add(where)
        for table in tables:
            if table in resolved_tables and resolved_tables[table][0] != kind:
                resolver.problems.append(f"{where}: lookup {table!r} also yields {resolved_tables[table][0]}; "
                                         f"give each its own table")
            resolved_tables.setdefault(table, (kind, convert))
        return converted

    def fields(section: dict[str, Any], where: str) -> None:
        rules = section.get("fields") or {}
        renamed: dict[str, Any] = {}
        for ref, rule in rules.items():
            key = resolver.field(f"{where}.fields.{ref}", ref)
            definition = schema.fields.get(str(key))
            if definition is not None and definition.type == "DROPDOWN":
                rule = outputs(f"{where}.fields.{ref}", rule, f"items of field {key}", _items_of(resolver, definition))
            if key in renamed:
                resolver.problems.append(f"{where}.fields.{ref}: field {key} is set twice")
            renamed[key] = rule
        if rules:
            section["fields"] = renamed

    box = doc.get("box") or {}
    change = doc.get("stage_change") or {}
    fields(box, "box")
    fields(change, "stage_change")
    if "order_key_field" in doc:
        doc["order_key_field"] = resolver.field("order_key_field", doc["order_key_field"])
    amount = box.get("amount") or {}
    for name in ("field", "currency_field"):
        if name in amount:
            amount[name] = resolver.field(f"box.amount.{name}", amount[name])
    for address_name, address in (doc.get("addresses") or {}).items():
        parts = address.get("fields") or {}
        for part, ref in parts.items():
            parts[part] = resolver.field(f"addresses.{address_name}.fields.{part}", ref)
    for section, where in ((box, "box.stage"), (change, "stage_change.stage")):
        if "stage" in section:
            section["stage"] = outputs(where, section["stage"], "stages", resolver.stage)
    if "lifecycle" in change:
        change["lifecycle"] = [resolver.stage(f"stage_change.lifecycle[{index}]", ref)
                               for index, ref in enumerate(change["lifecycle"])]

    for table, (kind, convert) in resolved_tables.items():
        entries = lookups.get(table)
        if entries is None:
            continue  # compiling reports the unknown table
        others = sorted(use.where for use in lookup_uses(document) if use.table == table
                        and use.where not in resolved_at and use.where.split(".first_of[")[0] not in resolved_at)
        if others:  # the same table elsewhere would get keys where it wants names
            resolver.problems.append(f"lookups.{table}: yields {kind} and is also used at {', '.join(others)}; "
                                     f"give each its own table")
        lookups[table] = {source: None if value is None else convert(f"lookups.{table}.{source}", value)
                          for source, value in entries.items()}
    if resolver.problems:
        raise MappingError("the document does not fit the Streak pipeline: " + "; ".join(resolver.problems))
    return doc, doc != document
