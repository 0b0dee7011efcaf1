"""Regenerate src/sluice/pricing/prices.json from a LiteLLM-format price list.

    python scripts/build_price_book.py ../shared/reference/model-prices.json

Keeps chat, completion, responses and embedding models (see sluice.pricing.litellm). The source,
its release and the date are kept with the data; ``version`` names both.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

from sluice.pricing.litellm import rows_from_litellm

#: Identifies the source release; bump with the source. The book's version is this plus its date.
SOURCE_RELEASE = "litellm-1.109.1"


def main(src: str) -> None:
    models = rows_from_litellm(json.loads(Path(src).read_text()))
    generated = date.today().isoformat()
    out = {
        "version": f"{SOURCE_RELEASE}/{generated}",
        "source": "BerriAI/litellm model_prices_and_context_window.json, release 1.109.1 (MIT licence)",
        "generated": generated,
        "units": "USD per token",
        "models": models,
    }
    target = Path(__file__).resolve().parent.parent / "src/sluice/pricing/prices.json"
    target.write_text(json.dumps(out, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"wrote {len(models)} models to {target}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/reference/model-prices.json")
