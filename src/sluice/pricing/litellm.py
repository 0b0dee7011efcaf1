"""Price lists in LiteLLM's format (``model_prices_and_context_window.json``): rows for the book.

Used to build the bundled ``prices.json`` (``scripts/build_price_book.py``) and to compare a newer
list with the book in force (``sluice prices diff``). Per-token USD prices are kept as strings so they
load as exact Decimals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

MODES: Final = frozenset({"chat", "completion", "responses", "embedding"})
#: LiteLLM's field → the book's short name.
FIELDS: Final = {
    "input_cost_per_token": "in",
    "output_cost_per_token": "out",
    "cache_read_input_token_cost": "cr",
    "cache_creation_input_token_cost": "cw",
    # Anthropic's 1-hour cache writes, priced apart from the 5-minute ones.
    "cache_creation_input_token_cost_above_1hr": "cw1h",
    "output_cost_per_reasoning_token": "rsn",
    "input_cost_per_request": "req",
}
#: The book's short names, as people read them.
LABELS: Final = {
    "in": "input", "out": "output", "cr": "cache_read", "cw": "cache_write", "cw1h": "cache_write_1h",
    "rsn": "reasoning", "req": "per_request",
}  # fmt: skip


def rows_from_litellm(data: Mapping[str, Any]) -> dict[str, dict[str, object]]:
    """The book's rows for every priced chat, completion, responses or embedding model."""
    models: dict[str, dict[str, object]] = {}
    for name, entry in sorted(data.items()):
        if name == "sample_spec" or not isinstance(entry, dict) or entry.get("mode") not in MODES:
            continue
        if "input_cost_per_token" not in entry:
            continue
        row: dict[str, object] = {}
        for key, short in FIELDS.items():
            value = entry.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                row[short] = format(value, ".6e") if value else "0"
        for key, short in (("max_input_tokens", "mi"), ("max_output_tokens", "mo")):
            value = entry.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                row[short] = value
        row["p"] = entry.get("litellm_provider", "")
        models[name] = row
    return models
