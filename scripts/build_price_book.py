"""Regenerate src/sluice/pricing/prices.json from a LiteLLM-format price list.

    python scripts/build_price_book.py ../shared/reference/model-prices.json

Keeps chat, completion, responses and embedding models; per-token USD prices are stored as strings
so they load as exact Decimals. The source and date are kept with the data.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

MODES = {"chat", "completion", "responses", "embedding"}
FIELDS = {
    "input_cost_per_token": "in",
    "output_cost_per_token": "out",
    "cache_read_input_token_cost": "cr",
    "cache_creation_input_token_cost": "cw",
}


def main(src: str) -> None:
    data = json.loads(Path(src).read_text())
    models: dict[str, dict[str, object]] = {}
    for name, entry in sorted(data.items()):
        if name == "sample_spec" or not isinstance(entry, dict) or entry.get("mode") not in MODES:
            continue
        if "input_cost_per_token" not in entry:
            continue
        row: dict[str, object] = {}
        for key, short in FIELDS.items():
            value = entry.get(key)
            if isinstance(value, int | float):
                row[short] = format(value, ".6e") if value else "0"
        for key, short in (("max_input_tokens", "mi"), ("max_output_tokens", "mo")):
            value = entry.get(key)
            if isinstance(value, int):
                row[short] = value
        row["p"] = entry.get("litellm_provider", "")
        models[name] = row
    out = {
        "source": "BerriAI/litellm model_prices_and_context_window.json, release 1.109.1 (MIT licence)",
        "generated": date.today().isoformat(),
        "units": "USD per token",
        "models": models,
    }
    target = Path(__file__).resolve().parent.parent / "src/sluice/pricing/prices.json"
    target.write_text(json.dumps(out, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"wrote {len(models)} models to {target}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/reference/model-prices.json")
