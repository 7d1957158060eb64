"""A Streak pipeline's stages and field definitions, read through its API, to judge a whole deal plan
before the first write (so a value Streak would reject cannot leave a half-written box behind).

The definitions are cached per process (a Lambda cold start) for ``SCHEMA_TTL_SECONDS``; a plan that
fails against a cached copy is judged again against a fresh one (someone may just have added the
dropdown item) before it is rejected.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from switchyard.errors import PermanentError
from switchyard.systems.streak.client import StreakClient

SCHEMA_TTL_SECONDS = 300.0
# below this an integer is far more plausibly epoch seconds than epoch milliseconds
MIN_EPOCH_MS = 100_000_000_000


@dataclass(frozen=True, slots=True)
class FieldDefinition:
    key: str
    name: str
    type: str
    item_keys: frozenset[str] = frozenset()  # DROPDOWN item keys, TAG tag keys
    items: tuple[tuple[str, str], ...] = ()  # DROPDOWN (item key, item name), in the pipeline's order


@dataclass(frozen=True, slots=True)
class PipelineSchema:
    stage_keys: frozenset[str]
    fields: Mapping[str, FieldDefinition]
    stages: tuple[tuple[str, str], ...] = ()  # (stage key, stage name), in the pipeline's order
    name: str = ""

    @classmethod
    def from_api(cls, pipeline: Mapping[str, Any]) -> PipelineSchema:
        stages = pipeline.get("stages") or {}
        fields = {}
        for spec in pipeline.get("fields") or []:
            items = (spec.get("dropdownSettings") or {}).get("items") or []
            tags = (spec.get("tagSettings") or {}).get("tags") or []
            keys = frozenset(str(entry.get("key")) for entry in [*items, *tags])
            fields[str(spec["key"])] = FieldDefinition(
                str(spec["key"]), str(spec.get("name", "")), str(spec.get("type", "")), keys,
                tuple((str(item.get("key")), str(item.get("name", ""))) for item in items))
        order = [str(key) for key in pipeline.get("stageOrder") or []]
        order += [str(key) for key in stages if str(key) not in order]
        named = tuple((key, str((stages.get(key) or {}).get("name", ""))) for key in order if key in stages)
        return cls(stage_keys=frozenset(str(key) for key in stages), fields=fields, stages=named,
                   name=str(pipeline.get("name", "")))

    def problems(self, stage_key: str, values: Mapping[str, Any]) -> list[str]:
        """Everything Streak would reject in a box's stage and field values (empty: all fine)."""
        found = [] if stage_key in self.stage_keys else [f"stage {stage_key!r} is not a stage of the pipeline"]
        for key, value in values.items():
            definition = self.fields.get(key)
            if definition is None:
                found.append(f"field {key!r} is not a field of the pipeline")
                continue
            check = _CHECKS.get(definition.type)
            problem = check(definition, value) if check else None
            if problem:
                found.append(f'field {key} "{definition.name}" ({definition.type}): {problem}')
        return found


def _text(_definition: FieldDefinition, value: Any) -> str | None:
    return None if isinstance(value, str) else f"expected a string, got {value!r}"


def _number(_definition: FieldDefinition, value: Any) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return None
    return f"expected a finite JSON number, got {value!r}"


def _date(_definition: FieldDefinition, value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= MIN_EPOCH_MS:
        return None
    return f"expected epoch milliseconds, got {value!r}"


def _dropdown(definition: FieldDefinition, value: Any) -> str | None:
    if isinstance(value, str) and value in definition.item_keys:
        return None
    return f"expected a dropdown item key (one of {', '.join(sorted(definition.item_keys))}), got {value!r}"


def _checkbox(_definition: FieldDefinition, value: Any) -> str | None:
    return None if isinstance(value, bool) else f"expected true or false, got {value!r}"


def _tags(definition: FieldDefinition, value: Any) -> str | None:
    if isinstance(value, list) and all(isinstance(v, str) and v in definition.item_keys for v in value):
        return None
    return f"expected a list of tag keys (from {', '.join(sorted(definition.item_keys))}), got {value!r}"


_CHECKS: dict[str, Callable[[FieldDefinition, Any], str | None]] = {
    "TEXT_INPUT": _text, "NUMBER": _number, "DATE": _date, "DROPDOWN": _dropdown, "CHECKBOX": _checkbox,
    "TAG": _tags,
}


class PipelineSchemas:
    """Pipeline schemas by (Streak host, pipeline key), each kept for ``ttl`` seconds."""

    def __init__(self, ttl: float = SCHEMA_TTL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: dict[tuple[str, str], tuple[float, PipelineSchema]] = {}

    def get(self, client: StreakClient, pipeline_key: str, *, fresh: bool = False) -> PipelineSchema:
        key = (client.connection.base_url, pipeline_key)
        with self._lock:
            entry = self._cached.get(key)
        if entry is not None and not fresh and entry[0] > self._clock():
            return entry[1]
        schema = PipelineSchema.from_api(client.get_pipeline(pipeline_key))
        with self._lock:
            self._cached[key] = (self._clock() + self._ttl, schema)
        return schema

    def check(self, client: StreakClient, pipeline_key: str, stage_key: str, values: Mapping[str, Any]) -> None:
        """Raise PermanentError (``plan_rejected_by_target_schema``) naming every value Streak would refuse."""
        problems = self.get(client, pipeline_key).problems(stage_key, values)
        if problems:  # maybe the pipeline changed since it was cached: judge against a fresh copy
            problems = self.get(client, pipeline_key, fresh=True).problems(stage_key, values)
        if problems:
            raise PermanentError("the deal does not fit the Streak pipeline: " + "; ".join(problems),
                                 reason="plan_rejected_by_target_schema",
                                 target_response={"problems": problems})


# one per process: a Lambda reads the pipeline once per cold start and TTL, not per record
PIPELINE_SCHEMAS = PipelineSchemas()
