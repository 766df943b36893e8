"""Loads the price catalogue from its JSON data file (the repo's, or the operator's)."""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from domain.pricing import ModelPrice, PriceTable

BUILTIN_CATALOG = Path(__file__).with_name("price_catalog.json")


def _prices(rows: dict[str, Any], snapshots: dict[str, str]) -> dict[str, ModelPrice]:
    """The rows of one table; their listed ``snapshots`` are added to ``snapshots``."""
    prices = {}
    for name, row in rows.items():
        snapshots.update({str(dated): name for dated in row.get("snapshots", ())})
        cached = row.get("cached_input")
        prices[name] = ModelPrice(
            input=Decimal(str(row["input"])), output=Decimal(str(row["output"])),
            cached_input=None if cached is None else Decimal(str(cached)),
            max_output_tokens=int(row.get("max_output_tokens", 16_384)))
    return prices


def load_price_catalog(path: str | Path | None = None) -> PriceTable:
    """Reads ``{"version": ..., "models": {name: {input, cached_input, output, max_output_tokens,
    snapshots}}, "upstreams": {upstream name: {name: {...}}}}``; ``snapshots`` lists dated names
    of the model that do not have the ``-YYYY-MM-DD`` shape (``gpt-4-0613``); ``upstreams``
    (per-upstream price overrides) is optional.

    Prices are decimal strings so that 0.075 stays 0.075 (a float would not).
    """
    data = json.loads(Path(path or BUILTIN_CATALOG).read_text(encoding="utf-8"))
    snapshots: dict[str, str] = {}
    prices = _prices(data["models"], snapshots)
    overrides = {str(upstream): _prices(rows, snapshots) for upstream, rows in (data.get("upstreams") or {}).items()}
    return PriceTable(version=str(data["version"]), prices=prices, snapshots=snapshots, upstream_prices=overrides)
