"""moto's EventBridge with partner event buses, as the local stack's Salesforce path needs them.

A partner bus is named after its partner event source (``aws.partner/salesforce.com/<org>/<channel>``).
moto 5.2 creates such a bus (given ``EventSourceName``) but then reduces every bus name or ARN it is
handed to the text after the last ``/``, so rules, targets and events never find it. The patch keeps
partner names whole: the part after ``:event-bus/`` of an ARN, or the name itself. Its CloudFormation
rules also hand over the bus object where a ``Ref`` should give its name. Applied once per process;
harmless for ordinary buses.
"""

from __future__ import annotations

from typing import Any

PARTNER_PREFIX = "aws.partner/"
_patched = False


def _normalized(self: Any, event_bus_arn: Any) -> str:
    if event_bus_arn is None:
        return "default"
    if not isinstance(event_bus_arn, str):  # CloudFormation's Ref of a bus hands moto the bus itself
        event_bus_arn = event_bus_arn.name
    name = event_bus_arn.split(":event-bus/", 1)[-1]
    return name if name.startswith(PARTNER_PREFIX) else name.split("/")[-1]


def allow_partner_buses() -> None:
    global _patched
    if _patched:
        return
    from moto.events.models import EventsBackend

    EventsBackend._normalize_event_bus_arn = _normalized  # type: ignore[method-assign]
    _patched = True
