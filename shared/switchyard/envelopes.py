"""Envelope validation at the webhook edge, with validators generated from the pydantic models
(``switchyard.sources``; regenerate with ``make generate``). Imports no pydantic: this module is
on the ingest Lambda's cold-start path."""

from __future__ import annotations

from typing import Any

from fastjsonschema import JsonSchemaValueException

from switchyard.errors import SchemaError
from switchyard.validators import MODULES, validator

# source -> the event types it may send (their validators load on first use)
EVENT_TYPES: dict[str, frozenset[str]] = {
    source: frozenset(e for s, e in MODULES if s == source) for source, _ in MODULES
}


def validate_envelope(source: str, document: Any) -> str:
    """Check a decoded webhook body against its event type's schema; return the event type.

    SchemaError names the offending field as a path into the body (``data.Order.OrderTotal``).
    """
    if not isinstance(document, dict):
        raise SchemaError("the body must be a JSON object", fields=[{"field": "$", "message": "not an object"}])
    event_type = document.get("type")
    validate = validator(source, event_type) if isinstance(event_type, str) else None
    if validate is None:
        expected = ", ".join(sorted(EVENT_TYPES.get(source, ())))
        raise SchemaError("unknown event type", fields=[
            {"field": "type", "message": f"got {event_type!r}, expected one of: {expected}"}])
    try:
        validate(document)
    except JsonSchemaValueException as exc:
        field = exc.name.removeprefix("data.") if exc.name != "data" else "$"
        message = exc.message.replace(exc.name, field, 1)
        if exc.rule == "required" and isinstance(exc.value, dict):
            missing = [name for name in exc.rule_definition if name not in exc.value]
            field = f"{field}.{missing[0]}" if field != "$" else missing[0]
            message = "Field required"
        raise SchemaError("the event does not match the source's schema",
                          fields=[{"field": field, "message": message}]) from None
    return str(event_type)
