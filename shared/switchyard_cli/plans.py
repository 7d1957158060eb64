"""What events become under one configuration's mappings, calling nobody: ``python -m switchyard_cli.plans``.

Run in a process of its own because the mapping documents are read once per process (cached): a process per
configuration keeps the stack's and the checkout's apart. Reads ``{"config_dir": DIR | null, "events":
[{"flow", "event_type", "body"}]}`` on stdin, writes one ``{"action", "plan"}`` or ``{"error", "message"}`` per
event on stdout, as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any


def plan_all(config_dir: str | None, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from switchyard import catalog as catalog_module

    if config_dir is not None:  # before any mapping document is read
        directory = Path(config_dir)
        catalog_module.config_dir = lambda: directory  # type: ignore[assignment]
        catalog_module.load_catalog.cache_clear()
    from switchyard.errors import DeliveryError, SwitchyardError
    from switchyard.mapping import dry_run

    catalog = catalog_module.load_catalog()
    planned: list[dict[str, Any]] = []
    for event in events:
        config = catalog.flows.get(event["flow"])
        if config is None or config.mapping is None:
            planned.append({"error": "no_mapping", "message": f"flow {event['flow']!r} has no mapping document here"})
            continue
        try:
            data = json.loads(event["body"], parse_float=Decimal)["data"]  # as the worker reads it: money exact
            action, plan = dry_run(config.target, config.mapping_document, event["event_type"], data,
                                   source=config.source)
        except (DeliveryError, SwitchyardError, KeyError, TypeError, ValueError) as exc:
            planned.append({"error": getattr(exc, "reason", type(exc).__name__), "message": str(exc)})
            continue
        shown = dataclasses.asdict(plan) if dataclasses.is_dataclass(plan) and not isinstance(plan, type) else plan
        planned.append(json.loads(json.dumps({"action": action, "plan": shown}, default=str)))
    return planned


def main() -> int:
    request = json.load(sys.stdin)
    json.dump(plan_all(request.get("config_dir"), request["events"]), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
