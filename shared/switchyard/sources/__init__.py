"""Typed webhook envelopes per source (pydantic models: the one definition of each event).

``parse_event`` validates into those models. The ingest Lambda uses ``switchyard.envelopes``
instead: validators generated from these models, without pydantic's cold-start cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Annotated, Any, NamedTuple, Union

from pydantic import Field, TypeAdapter, ValidationError

from switchyard import registry
from switchyard.errors import SchemaError


def event_models() -> dict[str, Mapping[str, type]]:
    """source -> event type -> model, for every system that sends webhooks: what ``make generate`` compiles
    into switchyard.validators (a source is named after its system)."""
    return {name: entry.webhook.event_models() for name, entry in registry.systems().items()
            if entry.webhook is not None}


@cache
def _adapter(source: str) -> TypeAdapter[Any]:
    models = tuple(registry.webhook(source).event_models().values())
    union: Any = models[0] if len(models) == 1 else Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007
    return TypeAdapter(union)


class ParsedEvent(NamedTuple):
    type: str
    timestamp: datetime
    model: Any


def supported_sources() -> frozenset[str]:
    return frozenset(name for name, entry in registry.systems().items() if entry.webhook is not None)


def envelope_json_schema(source: str, ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
    return _adapter(source).json_schema(ref_template=ref_template)


def _field_error(error: Any) -> dict[str, str]:
    loc = list(error["loc"])
    if error["type"].startswith("union_tag"):
        loc = ["type"]
    elif loc and isinstance(loc[0], str) and "." in loc[0]:
        loc = loc[1:]  # pydantic puts the matched event type first; the client wants the field path
    return {"field": ".".join(str(part) for part in loc) or "$", "message": error["msg"]}


def parse_event(source: str, document: Any) -> ParsedEvent:
    """Validate a decoded webhook body; SchemaError names every offending field."""
    try:
        event = _adapter(source).validate_python(document)
    except ValidationError as exc:
        fields = [_field_error(error) for error in exc.errors(include_url=False)]
        raise SchemaError("the event does not match the source's schema", fields=fields) from None
    return ParsedEvent(type=event.type, timestamp=event.timestamp, model=event)
