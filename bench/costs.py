"""Dollars per 1M orders from usage per order x the list prices in bench/aws_prices.yaml."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

PRICES_FILE = Path(__file__).resolve().parent / "aws_prices.yaml"


@cache
def prices() -> dict[str, Any]:
    return yaml.safe_load(PRICES_FILE.read_text())


def cost_per_million(usage_per_order: dict[str, float]) -> dict[str, Any]:
    """``{"usd_per_1m_orders", "lines": [{"item", "per_order", "usd_per_1m_orders"}, ...] (largest first)}``."""
    table = prices()["prices"]
    lines = []
    for item, per_order in usage_per_order.items():
        if item not in table:
            raise KeyError(f"no list price for {item} in {PRICES_FILE.name}")
        lines.append({"item": item, "per_order": round(per_order, 9),
                      "usd_per_1m_orders": round(per_order * table[item]["usd"] * 1_000_000, 2)})
    lines.sort(key=lambda line: -line["usd_per_1m_orders"])
    return {"usd_per_1m_orders": round(sum(line["usd_per_1m_orders"] for line in lines), 2),
            "prices_checked": prices()["checked"], "lines": lines}
